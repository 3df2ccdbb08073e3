"""Anthropic-shaped API errors, and the one function that maps Bedrock (botocore) failures onto them.

Every failure the proxy reports is an ``ApiError``: an HTTP status, an Anthropic error type
(``invalid_request_error``, ``authentication_error``, ``permission_error``, ``not_found_error``,
``request_too_large``, ``rate_limit_error``, ``api_error``, ``overloaded_error``) and a message.
"""

from __future__ import annotations

from typing import Any, Literal

from ptc_mcp.errors import PtcError

ErrorKind = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
]

STATUS: dict[ErrorKind, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

_BEDROCK_ERRORS: dict[str, ErrorKind] = {
    "ValidationException": "invalid_request_error",
    "AccessDeniedException": "permission_error",
    "UnrecognizedClientException": "authentication_error",
    "ResourceNotFoundException": "not_found_error",
    "ThrottlingException": "rate_limit_error",
    "ServiceQuotaExceededException": "rate_limit_error",
    "ModelNotReadyException": "overloaded_error",
    "ServiceUnavailableException": "overloaded_error",
    "ModelTimeoutException": "api_error",
    "ModelErrorException": "api_error",
    "InternalServerException": "api_error",
}


class ApiError(PtcError):
    """An error the proxy answers with: ``{"type": "error", "error": {"type": kind, "message": ...}}``."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message

    @property
    def status(self) -> int:
        return STATUS[self.kind]

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "error", "error": {"type": self.kind, "message": self.message}}
        if request_id:
            body["request_id"] = request_id
        return body


def invalid(message: str) -> ApiError:
    """The most common one: the request is malformed or asks for something unsupported."""
    return ApiError("invalid_request_error", message)


def from_bedrock(exc: Exception) -> ApiError:
    """Map a botocore error (or any failure talking to Bedrock) onto the Anthropic error it corresponds to."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or str(exc)
        return ApiError(_BEDROCK_ERRORS.get(code, "api_error"), f"Bedrock: {code}: {message}" if code else message)
    return ApiError("api_error", f"Bedrock could not be reached: {exc}")

"""Blocking calls to the AgentCore Code Interpreter data plane, through the ``bedrock-agentcore`` SDK and boto3.

Everything here blocks: the backend calls it with ``anyio.to_thread.run_sync``. botocore retries throttling and
transient errors of the HTTP request (``standard`` retry mode); errors that arrive inside the event stream are
retried here with exponential backoff and jitter. AWS exceptions are mapped onto ``SandboxFailure`` by
``aws_failure``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
from bedrock_agentcore.tools.code_interpreter_client import CodeInterpreter
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EventStreamError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from ptc_mcp.errors import SandboxFailure

__all__ = ["InterpreterClient", "ToolOutput", "aws_failure"]

log = logging.getLogger(__name__)

_TRANSIENT_STREAM_ERRORS = {"throttlingException", "internalServerException"}
_CAPACITY_ERRORS = {"ServiceQuotaExceededException", "ThrottlingException"}
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 8.0


@dataclass
class ToolOutput:
    """One ``InvokeCodeInterpreter`` answer, flattened."""

    stdout: str
    stderr: str
    text: str
    is_error: bool


class InterpreterClient:
    """One code interpreter (identifier) in one region; thread-safe; one SDK object per AgentCore session."""

    def __init__(
        self,
        *,
        region: str | None,
        identifier: str,
        endpoint_url: str | None,
        profile: str | None,
        max_attempts: int,
        read_timeout_s: float,
        boto_session: boto3.Session | None = None,
    ) -> None:
        self.identifier = identifier
        self.max_attempts = max_attempts
        self._boto = boto_session or boto3.Session(profile_name=profile)
        self.region = region or self._boto.region_name
        if not self.region:
            raise NoRegionError()
        config = BotoConfig(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=10,
            read_timeout=read_timeout_s,
            user_agent_extra="ptc-mcp",
        )
        self._lock = threading.Lock()  # boto3 Sessions are not thread-safe; clients are
        self._data_plane = self._boto.client(
            "bedrock-agentcore", region_name=self.region, endpoint_url=endpoint_url, config=config
        )
        self.endpoint = str(self._data_plane.meta.endpoint_url)

    def start(self, timeout_s: int) -> CodeInterpreter:
        """StartCodeInterpreterSession; the SDK object then names the session."""
        with self._lock:
            sdk = CodeInterpreter(self.region, session=self._boto)
        sdk.data_plane_client = self._data_plane  # ours: endpoint override and retry configuration
        name = f"ptc-mcp-{uuid.uuid4().hex[:12]}"
        sdk.start(identifier=self.identifier, name=name, session_timeout_seconds=timeout_s)
        return sdk

    def attach(self, session_id: str) -> CodeInterpreter:
        """An SDK object for a session that already exists (started by this or another ptc-mcp instance)."""
        with self._lock:
            sdk = CodeInterpreter(self.region, session=self._boto)
        sdk.data_plane_client = self._data_plane
        sdk.identifier = self.identifier
        sdk.session_id = session_id
        return sdk

    def describe(self, sdk: CodeInterpreter) -> dict[str, Any]:
        """GetCodeInterpreterSession."""
        session: dict[str, Any] = sdk.get_session()
        return session

    def stop(self, sdk: CodeInterpreter) -> None:
        """StopCodeInterpreterSession; a session that is already gone counts as stopped."""
        try:
            sdk.stop()
        except ClientError as exc:
            if _code(exc) not in {"ResourceNotFoundException", "ValidationException"}:
                raise

    def invoke(self, sdk: CodeInterpreter, tool: str, arguments: dict[str, Any]) -> ToolOutput:
        """InvokeCodeInterpreter, reading its event stream to the end; in-stream transient errors are retried.

        Retrying is safe for the stepped protocol: every step carries a sequence number and the runtime answers
        a repeated step from its cache instead of running it again.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                response = sdk.invoke(tool, arguments)
                return _flatten(response["stream"])
            except (EventStreamError, ClientError, ReadTimeoutError, BotoConnectionError) as exc:
                if attempt >= self.max_attempts or not _transient(exc):
                    raise
                delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
                log.info("AgentCore %s: %s; retrying in %.2f s (attempt %d)", tool, exc, delay, attempt)
                time.sleep(delay)


def _transient(exc: Exception) -> bool:
    if isinstance(exc, EventStreamError):
        return _code(exc) in _TRANSIENT_STREAM_ERRORS
    # botocore already retried the HTTP request itself; what reaches here mid-stream is worth one more go
    return isinstance(exc, ReadTimeoutError | BotoConnectionError)


def _flatten(stream: Any) -> ToolOutput:
    stdout: list[str] = []
    stderr: list[str] = []
    text: list[str] = []
    is_error = False
    for event in stream:
        result = event.get("result")
        if result is None:
            continue
        is_error = is_error or bool(result.get("isError"))
        structured = result.get("structuredContent") or {}
        stdout.append(structured.get("stdout") or "")
        stderr.append(structured.get("stderr") or "")
        text.extend(block.get("text") or "" for block in result.get("content") or [] if block.get("type") == "text")
    return ToolOutput(stdout="".join(stdout), stderr="".join(stderr), text="".join(text), is_error=is_error)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def aws_failure(exc: BaseException, action: str) -> SandboxFailure:
    """An AWS/botocore exception as a ``SandboxFailure`` whose message says what to do about it."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return SandboxFailure(
            f"AgentCore {action}: no AWS credentials (boto3's default chain: environment, ~/.aws, SSO, instance role)"
        )
    if isinstance(exc, NoRegionError):
        return SandboxFailure(f"AgentCore {action}: no AWS region: set sandbox.agentcore.region or AWS_REGION")
    if isinstance(exc, ClientError):
        code = _code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code in {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException"}:
            return SandboxFailure(f"AgentCore {action}: access denied ({message}); see docs/backends/agentcore.md")
        if code in {"ResourceNotFoundException", "resourceNotFoundException"}:
            return SandboxFailure(f"AgentCore {action}: the session or interpreter no longer exists ({message})")
        if code[:1].upper() + code[1:] in _CAPACITY_ERRORS:  # stream members are spelled in camelCase
            return SandboxFailure(f"AgentCore {action}: {code} after retries ({message})", "busy")
        return SandboxFailure(f"AgentCore {action}: {code or type(exc).__name__}: {message}")
    if isinstance(exc, BotoCoreError):
        return SandboxFailure(f"AgentCore {action}: {exc}")
    return SandboxFailure(f"AgentCore {action}: {type(exc).__name__}: {exc}")

"""The AgentCore Code Interpreter data plane, emulated: sessions and the tools of ``InvokeCodeInterpreter``.

No HTTP here (see ``agentcore.py``): ``CodeInterpreterService`` keeps the sessions, expires them after their
``sessionTimeoutSeconds``, and answers each tool with the ``CodeInterpreterResult`` shape of the service model.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from ptc_mcp.emulators.agentcore_kernel import ExecutionOutput, Kernel, KernelError
from ptc_mcp.errors import EmulatorError, SandboxFailure
from ptc_mcp.sandboxes.base import SandboxLimits
from ptc_mcp.sandboxes.process.backend import ProcessBackend

__all__ = ["DEFAULT_INTERPRETER", "CodeInterpreterService", "EmulatedSession", "ServiceError"]

log = logging.getLogger(__name__)

DEFAULT_INTERPRETER = "aws.codeinterpreter.v1"
DEFAULT_SESSION_TIMEOUT_S = 900
COMMAND_TIMEOUT_S = 300.0
FORGET_AFTER_S = 3600.0
"""A terminated session stays visible to GetCodeInterpreterSession this long after its timeout."""
SUPPORTED_TOOLS = ("executeCode", "executeCommand", "readFiles", "listFiles", "removeFiles", "writeFiles")


class ServiceError(EmulatorError):
    """A modelled error of the service: ``code`` is the shape name (``ResourceNotFoundException``, ...)."""

    STATUS = {
        "ValidationException": 400,
        "AccessDeniedException": 403,
        "ResourceNotFoundException": 404,
        "ConflictException": 409,
        "ServiceQuotaExceededException": 402,
        "ThrottlingException": 429,
        "InternalServerException": 500,
    }

    def __init__(self, code: str, message: str, reason: str = "FieldValidationFailed") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason

    @property
    def status(self) -> int:
        return self.STATUS.get(self.code, 400)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.code == "ValidationException":
            body["reason"] = self.reason
        return body


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC, as the service model's ``DateTimestamp``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class EmulatedSession:
    """One session: its metadata and, while READY, its interpreter process."""

    interpreter_id: str
    session_id: str
    name: str
    timeout_s: int
    kernel: Kernel | None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    expires_at: float = 0.0
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def status(self) -> str:
        return "READY" if self.kernel is not None else "TERMINATED"

    def describe(self) -> dict[str, Any]:
        return {
            "codeInterpreterIdentifier": self.interpreter_id,
            "sessionId": self.session_id,
            "name": self.name,
            "createdAt": timestamp(self.created_at),
            "lastUpdatedAt": timestamp(self.last_updated_at),
            "sessionTimeoutSeconds": self.timeout_s,
            "status": self.status,
        }


def text_result(text: str, *, is_error: bool = False, structured: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None:
        result["structuredContent"] = structured
    return result


class CodeInterpreterService:
    """Sessions of every code interpreter identifier (the emulator accepts any identifier)."""

    def __init__(self, limits: SandboxLimits | None = None, *, use_bubblewrap: bool | None = None) -> None:
        self.backend = ProcessBackend(limits or SandboxLimits(), use_bubblewrap=use_bubblewrap)
        self.sessions: dict[str, EmulatedSession] = {}
        self._tokens: dict[str, str] = {}
        self._start_lock = anyio.Lock()

    # -- sessions -----------------------------------------------------------------------------------------------

    async def start(
        self, interpreter_id: str, name: str | None, timeout_s: int | None, token: str | None
    ) -> EmulatedSession:
        async with self._start_lock:  # one start per client token, even when boto3 retries
            if token and token in self._tokens:
                return self.sessions[self._tokens[token]]
            timeout = DEFAULT_SESSION_TIMEOUT_S if timeout_s is None else timeout_s
            if not 1 <= timeout <= 28800:
                raise ServiceError("ValidationException", "sessionTimeoutSeconds must be between 1 and 28800")
            try:
                kernel = await Kernel.start(self.backend)
            except (SandboxFailure, RuntimeError, OSError) as exc:
                raise ServiceError("InternalServerException", f"cannot start an interpreter: {exc}") from None
            session_id = secrets.token_hex(13).upper()[:26]
            session = EmulatedSession(
                interpreter_id=interpreter_id,
                session_id=session_id,
                name=name or f"session-{session_id[:8].lower()}",
                timeout_s=timeout,
                kernel=kernel,
                expires_at=time.monotonic() + timeout,
            )
            self.sessions[session_id] = session
            if token:
                self._tokens[token] = session_id
            log.info("started session %s (%s, %d s)", session_id, interpreter_id, timeout)
            return session

    def get(self, interpreter_id: str, session_id: str | None) -> EmulatedSession:
        session = self.sessions.get(session_id or "")
        if session is None or session.interpreter_id != interpreter_id:
            raise ServiceError("ResourceNotFoundException", f"session {session_id!r} not found")
        return session

    def ready(self, interpreter_id: str, session_id: str | None) -> tuple[EmulatedSession, Kernel]:
        session = self.get(interpreter_id, session_id)
        if session.kernel is None:
            raise ServiceError("ResourceNotFoundException", f"session {session_id!r} is terminated")
        return session, session.kernel

    async def stop(self, interpreter_id: str, session_id: str | None) -> EmulatedSession:
        session = self.get(interpreter_id, session_id)
        await self._terminate(session)
        return session

    async def _terminate(self, session: EmulatedSession) -> None:
        kernel, session.kernel = session.kernel, None
        session.last_updated_at = datetime.now(UTC)
        if kernel is not None:
            log.info("stopping session %s", session.session_id)
            await kernel.aclose()

    async def expire(self) -> None:
        """Terminate sessions past their timeout, forget long-terminated ones; run periodically."""
        now = time.monotonic()
        for session in list(self.sessions.values()):
            if session.kernel is not None and now >= session.expires_at:
                await self._terminate(session)
            elif session.kernel is None and now >= session.expires_at + FORGET_AFTER_S:
                del self.sessions[session.session_id]

    async def aclose(self) -> None:
        """Terminate every session (the emulator is stopping)."""
        with anyio.CancelScope(shield=True):
            for session in list(self.sessions.values()):
                await self._terminate(session)
            await self.backend.aclose()

    # -- tools --------------------------------------------------------------------------------------------------

    async def invoke(
        self, session: EmulatedSession, kernel: Kernel, tool: str, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        """Run one tool; a failure inside the session is a result with ``isError``, as in the service."""
        if tool not in SUPPORTED_TOOLS:
            raise ServiceError("ValidationException", f"the emulator does not implement the {tool!r} tool")
        async with session.lock:  # the interpreter runs one tool at a time
            if session.kernel is not kernel:
                raise ServiceError("ResourceNotFoundException", f"session {session.session_id!r} is terminated")
            session.last_updated_at = datetime.now(UTC)
            try:
                return await self._dispatch(kernel, tool, arguments)
            except KernelError as exc:
                return text_result(str(exc), is_error=True)
            except SandboxFailure as exc:
                await self._terminate(session)
                return text_result(f"the interpreter process ended: {exc}", is_error=True)

    async def _dispatch(self, kernel: Kernel, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if tool == "executeCode":
            language = arguments.get("language") or "python"
            if language != "python":
                raise ServiceError("ValidationException", f"the emulator runs python only, not {language!r}")
            code = _string(arguments, "code")
            return _execution_result(await kernel.execute_code(code, clear_context=bool(arguments.get("clearContext"))))
        if tool == "executeCommand":
            outcome = await kernel.execute_command(_string(arguments, "command"), COMMAND_TIMEOUT_S)
            text = outcome["stdout"] + outcome["stderr"]
            return text_result(text, is_error=outcome["exitCode"] != 0, structured=outcome)
        if tool == "writeFiles":
            items = arguments.get("content")
            if not isinstance(items, list) or not items:
                raise ServiceError("ValidationException", "writeFiles needs arguments.content")
            written = await kernel.write_files(items)
            return text_result(f"Successfully wrote {len(written)} file(s): {', '.join(written)}")
        if tool == "readFiles":
            paths = _paths(arguments)
            resources = await kernel.read_files(paths)
            return {"content": [{"type": "resource", "resource": item} for item in resources], "isError": False}
        if tool == "listFiles":
            entries = await kernel.list_files(str(arguments.get("directoryPath") or "."))
            return {"content": [_link(entry) for entry in entries], "isError": False}
        removed = await kernel.remove_files(_paths(arguments))
        return text_result(f"Successfully removed {len(removed)} file(s)")


def _string(arguments: dict[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str):
        raise ServiceError("ValidationException", f"arguments.{key} is required")
    return value


def _paths(arguments: dict[str, Any]) -> list[str]:
    paths = arguments.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(path, str) for path in paths):
        raise ServiceError("ValidationException", "arguments.paths must be a non-empty list of strings")
    return paths


def _link(entry: dict[str, Any]) -> dict[str, Any]:
    link: dict[str, Any] = {
        "type": "resource_link",
        "name": entry["name"],
        "uri": entry["uri"],
        "description": "Directory" if entry["isDirectory"] else "File",
        "size": entry["size"],
    }
    if entry.get("mimeType"):
        link["mimeType"] = entry["mimeType"]
    return link


def _execution_result(output: ExecutionOutput) -> dict[str, Any]:
    structured = {
        "stdout": output.stdout,
        "stderr": output.stderr,
        "exitCode": 0 if output.ok else 1,
        "executionTime": round(output.seconds, 6),
    }
    text = output.stdout if output.ok else output.stdout + output.stderr
    return text_result(text, is_error=not output.ok, structured=structured)

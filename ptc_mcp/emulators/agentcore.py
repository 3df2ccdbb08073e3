"""A local emulator of the Amazon Bedrock AgentCore Code Interpreter data plane, for tests and development.

Real boto3 (and the ``bedrock-agentcore`` SDK) reach it through ``endpoint_url``::

    client = boto3.client("bedrock-agentcore", region_name="us-east-1", endpoint_url="http://127.0.0.1:8787")

It follows the ``bedrock-agentcore`` service model that botocore ships (rest-json): StartCodeInterpreterSession,
GetCodeInterpreterSession, StopCodeInterpreterSession, ListCodeInterpreterSessions, and InvokeCodeInterpreter
with its event-stream response (``executeCode``, ``executeCommand``, ``writeFiles``, ``readFiles``, ``listFiles``,
``removeFiles``). Each session is a persistent Python process in ptc-mcp's ``process`` sandbox (bubblewrap when
available). Requests are not authenticated (SigV4 signatures are accepted unchecked), so it binds to loopback only.

``faults`` injects service errors into the next requests, to exercise a client's retries.
"""

from __future__ import annotations

import collections
import json
import logging
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ptc_mcp.emulators.agentcore_service import CodeInterpreterService, EmulatedSession, ServiceError, timestamp
from ptc_mcp.emulators.eventstream import encode_event, encode_exception
from ptc_mcp.listening import is_loopback, listening_socket
from ptc_mcp.sandboxes.base import SandboxLimits

__all__ = ["AgentCoreEmulator", "Fault", "running_emulator", "serve_emulator"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8787
SESSION_HEADER = "x-amzn-code-interpreter-session-id"
EXPIRY_INTERVAL_S = 1.0
FaultWhere = Literal["http", "stream"]


class Fault:
    """An injected error: ``where="http"`` answers with the error status, ``"stream"`` sends it in the stream."""

    def __init__(self, code: str, where: FaultWhere = "http", message: str = "injected by the emulator") -> None:
        self.code = code
        self.where = where
        self.message = message


class AgentCoreEmulator:
    """The emulator as an ASGI app (``.app``); close it with ``aclose`` to end every session."""

    def __init__(self, limits: SandboxLimits | None = None, *, use_bubblewrap: bool | None = None) -> None:
        self.service = CodeInterpreterService(limits, use_bubblewrap=use_bubblewrap)
        self.faults: collections.deque[Fault] = collections.deque()
        """Errors for the next requests, consumed one per request (operations and invocations alike)."""
        self.invocations = 0
        base = "/code-interpreters/{codeInterpreterIdentifier}"
        self.app = Starlette(
            routes=[
                Route(f"{base}/sessions/start", self._start, methods=["PUT"]),
                Route(f"{base}/sessions/stop", self._stop, methods=["PUT"]),
                Route(f"{base}/sessions/get", self._get, methods=["GET"]),
                Route(f"{base}/sessions/list", self._list, methods=["POST"]),
                Route(f"{base}/tools/invoke", self._invoke, methods=["POST"]),
            ],
        )

    @property
    def isolated(self) -> bool:
        """Whether sessions run inside bubblewrap."""
        return self.service.backend.isolated

    async def aclose(self) -> None:
        await self.service.aclose()

    async def expire_sessions_forever(self) -> None:
        while True:
            await anyio.sleep(EXPIRY_INTERVAL_S)
            await self.service.expire()

    # -- routes ---------------------------------------------------------------------------------------------------

    def _fault(self) -> Fault | None:
        return self.faults.popleft() if self.faults else None

    async def _start(self, request: Request) -> Response:
        async def handle(body: dict[str, Any]) -> Response:
            session = await self.service.start(
                request.path_params["codeInterpreterIdentifier"],
                _optional(body, "name", str),
                _optional(body, "sessionTimeoutSeconds", int),
                _optional(body, "clientToken", str),
            )
            return JSONResponse(
                {
                    "codeInterpreterIdentifier": session.interpreter_id,
                    "sessionId": session.session_id,
                    "createdAt": timestamp(session.created_at),
                }
            )

        return await self._operation(request, handle)

    async def _stop(self, request: Request) -> Response:
        async def handle(body: dict[str, Any]) -> Response:
            session = await self.service.stop(
                request.path_params["codeInterpreterIdentifier"], request.query_params.get("sessionId")
            )
            return JSONResponse(
                {
                    "codeInterpreterIdentifier": session.interpreter_id,
                    "sessionId": session.session_id,
                    "lastUpdatedAt": timestamp(session.last_updated_at),
                }
            )

        return await self._operation(request, handle)

    async def _get(self, request: Request) -> Response:
        async def handle(body: dict[str, Any]) -> Response:
            session = self.service.get(
                request.path_params["codeInterpreterIdentifier"], request.query_params.get("sessionId")
            )
            return JSONResponse(session.describe())

        return await self._operation(request, handle)

    async def _list(self, request: Request) -> Response:
        async def handle(body: dict[str, Any]) -> Response:
            interpreter_id = request.path_params["codeInterpreterIdentifier"]
            status = _optional(body, "status", str)
            limit = _optional(body, "maxResults", int) or 10
            items = [
                {key: value for key, value in session.describe().items() if key != "sessionTimeoutSeconds"}
                for session in self.service.sessions.values()
                if session.interpreter_id == interpreter_id and status in (None, session.status)
            ]
            return JSONResponse({"items": items[:limit]})

        return await self._operation(request, handle)

    async def _operation(self, request: Request, handle: Any) -> Response:
        fault = self._fault()
        if fault is not None:
            return _error_response(ServiceError(fault.code, fault.message))
        try:
            return await handle(await _json_body(request))  # type: ignore[no-any-return]
        except ServiceError as exc:
            return _error_response(exc)

    async def _invoke(self, request: Request) -> Response:
        self.invocations += 1
        fault = self._fault()
        if fault is not None and fault.where == "http":
            return _error_response(ServiceError(fault.code, fault.message))
        try:
            body = await _json_body(request)
            tool = _optional(body, "name", str)
            if tool is None:
                raise ServiceError("ValidationException", "name is required")
            arguments = body.get("arguments") or {}
            if not isinstance(arguments, dict):
                raise ServiceError("ValidationException", "arguments must be an object")
            session, kernel = self.service.ready(
                request.path_params["codeInterpreterIdentifier"], request.headers.get(SESSION_HEADER)
            )
        except ServiceError as exc:
            return _error_response(exc)
        return StreamingResponse(
            self._invocation_stream(session, kernel, tool, arguments, fault),
            media_type="application/vnd.amazon.eventstream",
            headers={SESSION_HEADER: session.session_id},
        )

    async def _invocation_stream(
        self, session: EmulatedSession, kernel: Any, tool: str, arguments: dict[str, Any], fault: Fault | None
    ) -> AsyncIterator[bytes]:
        if fault is not None:
            yield encode_exception(_member_name(fault.code), fault.message)
            return
        # Shielded: a client that gives up (read timeout, retry) must not kill the session's interpreter.
        with anyio.CancelScope(shield=True):
            try:
                result = await self.service.invoke(session, kernel, tool, arguments)
            except ServiceError as exc:
                failure: ServiceError | None = exc
            else:
                failure = None
        if failure is not None:
            yield encode_exception(_member_name(failure.code), failure.message)
        else:
            yield encode_event("result", result)


def _member_name(code: str) -> str:
    """``ThrottlingException`` → ``throttlingException``: the stream's member names for modelled errors."""
    return code[:1].lower() + code[1:]


def _error_response(error: ServiceError) -> Response:
    return JSONResponse(error.body(), status_code=error.status, headers={"x-amzn-ErrorType": error.code})


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ServiceError("ValidationException", "the request body is not JSON", "CannotParse") from None
    if not isinstance(body, dict):
        raise ServiceError("ValidationException", "the request body is not an object", "CannotParse")
    return body


def _optional(body: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise ServiceError("ValidationException", f"{key} must be a {kind.__name__}")
    return value


def _loopback_socket(host: str, port: int) -> socket.socket:
    if not is_loopback(host):
        raise ValueError(f"the emulator runs untrusted code without authentication: bind to loopback, not {host!r}")
    return listening_socket(host, port)


@asynccontextmanager
async def running_emulator(
    host: str = "127.0.0.1", port: int = 0, *, emulator: AgentCoreEmulator | None = None
) -> AsyncIterator[tuple[str, AgentCoreEmulator]]:
    """Serve an emulator on loopback (``port=0``: any free port); yields ``(endpoint_url, emulator)``."""
    emulator = emulator or AgentCoreEmulator()
    sock = _loopback_socket(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(emulator.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    url_host = f"[{host}]" if ":" in host else host
    stopped = anyio.Event()

    async def serve() -> None:
        try:
            await server.serve([sock])
        finally:
            stopped.set()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(serve)
            tasks.start_soon(emulator.expire_sessions_forever)
            with anyio.fail_after(10):
                while not server.started:
                    await anyio.sleep(0.01)
            try:
                yield f"http://{url_host}:{bound_port}", emulator
            finally:
                await emulator.aclose()  # ends running invocations, so the server can drain
                server.should_exit = True
                with anyio.move_on_after(5, shield=True):
                    await stopped.wait()
                tasks.cancel_scope.cancel()
    finally:
        sock.close()


async def serve_emulator(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve the emulator until cancelled or sent SIGINT/SIGTERM (``ptc-mcp emulate agentcore``)."""
    async with running_emulator(host, port) as (url, emulator):
        log.warning(
            "AgentCore Code Interpreter emulator on %s (sessions %s); point boto3 at it with endpoint_url=%r",
            url,
            "in bubblewrap" if emulator.isolated else "NOT isolated: bubblewrap is unavailable",
            url,
        )
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for received in signals:
                log.warning("%s: stopping every session", signal.Signals(received).name)
                return

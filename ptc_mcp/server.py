"""The MCP server: one tool, ``execute_program``, over stdio, SSE or streamable HTTP.

Failures inside a program are results (``isError: true`` with a typed ``structuredContent``), never protocol
errors. On protocol versions with an MCP session, each connection owns one live interpreter by default, and so does a
stdio connection on every protocol version (it has exactly one client); otherwise (the stateless 2026-07-28 protocol
over HTTP, stateless HTTP) the client passes back the ``session`` handle every result carries, and a result that
started a new session says so.

Downstream servers' questions (elicitation, sampling) and approvals reach the client of the run that asked: on
handshake-era connections as server→client requests on the ``execute_program`` request's stream (``RequestChannel``),
on 2026-07-28 ones as ``InputRequiredResult``s of a multi-round-trip call (``ptc_mcp.input_exchange``).

A request that carries a progress token gets progress notifications and the program's output as log messages
while it runs (``ptc_mcp.progress``). Cancelling the request (``notifications/cancelled``, or closing the response
stream on the 2026-07-28 HTTP transport: the SDK cancels the handler either way) cancels the run: the executor
kills the session's interpreter and everything it started; the session continues from a fresh interpreter.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.connection import Connection, allowed_log_levels
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ptc_mcp import __version__
from ptc_mcp.app import App
from ptc_mcp.auth import caller_identity
from ptc_mcp.errors import validation_problems
from ptc_mcp.executor import ExecuteRequest
from ptc_mcp.input_exchange import InputExchange, arguments_digest
from ptc_mcp.interaction import SamplingAnswer
from ptc_mcp.progress import LOGGER_NAME, RunReporter
from ptc_mcp.results import RunResult, error_result, output_schema
from ptc_mcp.sdk_tracing import trace_only_when_collected
from ptc_mcp.sessions import ConnectionSlot

log = logging.getLogger(__name__)
_T = TypeVar("_T")

TOOL_NAME = "execute_program"
INSTRUCTIONS = (
    "Use execute_program to run one Python program that calls the available tools as async functions and "
    "prints only what you need. Variables persist between calls in the same session."
)


class ExecuteArguments(BaseModel):
    """The input of ``execute_program`` (strict: wrong types are refused, not coerced)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    code: str
    session: str | None = None
    reset: bool = False
    timeout_s: float | int | None = Field(default=None, gt=0)


def input_schema(max_timeout_s: float) -> dict[str, Any]:
    """The advertised input schema: standard JSON Schema, every property typed, no words the description already
    says (the model reads both on every call). ``ExecuteArguments`` does the checking."""
    limit = int(max_timeout_s) if float(max_timeout_s).is_integer() else max_timeout_s
    return {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "session": {"type": "string", "description": "A result's session: pass it back to keep your variables."},
            "reset": {"type": "boolean", "description": "Start the session afresh."},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": limit},
        },
        "required": ["code"],
        "additionalProperties": False,
    }


def execute_program_tool(app: App) -> types.Tool:
    return types.Tool(
        name=TOOL_NAME,
        title="Run a Python program that calls tools",
        description=app.bridge.snapshot.description,
        input_schema=input_schema(app.config.limits.timeout_s),
        output_schema=output_schema(),
        annotations=types.ToolAnnotations(
            title="Run a Python program that calls tools", read_only_hint=False, destructive_hint=True
        ),
    )


def _connection(ctx: ServerRequestContext[Any, Any]) -> Connection:
    """The connection a request came on: its state and exit stack outlive the request.

    The only access to the SDK's private parts. mcp 2.x has no public way from a ``ServerRequestContext`` to its
    ``Connection`` (only the ``Context`` class, which the server runner does not build yet, has ``.connection``),
    so this reads the ``ServerSession``'s ``_connection``. tests/test_server_connection.py fails when that changes.
    """
    return ctx.session._connection


def _caller_identity() -> str | None:
    """The authenticated caller (``client[:subject][@issuer]``) on HTTP with auth; sessions and the audit trail
    record it."""
    return caller_identity(get_access_token())


def _progress_needs_token(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's progress notifications reach the client only through its progress token: on every
    JSON-RPC transport (stdio, SSE, HTTP), not on the in-process one (it hands the client's callback over).

    mcp 2.x exposes a request's dispatch context only privately (``ServerSession._request_outbound``); when that
    changes this answers ``False`` (a reporter is built as before) and tests/test_server_progress_gate.py fails.
    """
    outbound = getattr(ctx.session, "_request_outbound", None)
    transport = getattr(outbound, "transport", None)
    return getattr(transport, "kind", None) == "jsonrpc"


def run_reporter(ctx: ServerRequestContext[Any, Any], max_log_bytes: int) -> RunReporter | None:
    """A reporter for this request, or ``None`` when nothing it sends could reach the client.

    On handshake-era connections progress needs the request's progress token, and the program's output goes out
    as log messages only with it. On 2026-07-28 connections the SDK drops log messages the request did not opt in
    to, and progress without a token reaches only an in-process client (the in-process transport hands the
    client's callback over directly, with no token on the wire): a request with neither gets no reporter, so its
    run starts no pump.
    """
    has_token = progress_token_from_params(ctx.params) is not None
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        if not has_token:
            return None
        log_levels: frozenset[str] | None = None  # every level (logging/setLevel-era semantics)
    else:
        # The same gate as the SDK's (deprecated) send_log_message: the request's opt-in level and above.
        log_levels = allowed_log_levels(ctx.protocol_version, ctx.meta)
        if not has_token and not log_levels and _progress_needs_token(ctx):
            return None
    session = ctx.session
    request_id = ctx.request_id

    async def send_progress(progress: float, message: str) -> None:
        await session.report_progress(progress, None, message)

    async def send_log(level: str, data: dict[str, Any]) -> None:
        if log_levels is not None and level not in log_levels:
            return
        notification = types.LoggingMessageNotification(
            params=types.LoggingMessageNotificationParams(level=level, data=data, logger=LOGGER_NAME)
        )
        await session.send_notification(notification, related_request_id=request_id)

    return RunReporter(send_progress=send_progress, send_log=send_log, max_log_bytes=max_log_bytes)


class _Server(Server[Any]):
    """The SDK's low-level server, announcing ``tools.listChanged`` on every transport.

    Streamable HTTP starts each session with the server's default initialization options, so the flag has to be
    the default here rather than something the stdio and SSE paths pass in.
    """

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True), experimental_capabilities, extensions
        )


async def reported(
    ctx: ServerRequestContext[Any, Any], max_log_bytes: int, work: Callable[[RunReporter | None], Awaitable[_T]]
) -> _T:
    """``work(reporter)`` with this request's reporter (see ``run_reporter``) pumping meanwhile and flushed after."""
    reporter = run_reporter(ctx, max_log_bytes)
    if reporter is None:
        return await work(None)
    async with anyio.create_task_group() as pump:
        pump.start_soon(reporter.pump)
        try:
            value = await work(reporter)
        finally:
            reporter.stop()
    await reporter.flush()
    return value


_ELICITATION = types.ClientCapabilities(elicitation=types.ElicitationCapability())
_SAMPLING = types.ClientCapabilities(sampling=types.SamplingCapability())


def client_can(ctx: ServerRequestContext[Any, Any]) -> tuple[bool, bool]:
    """Whether the client of this request declared elicitation and sampling."""
    session = ctx.session
    return session.check_client_capability(_ELICITATION), session.check_client_capability(_SAMPLING)


class RequestChannel:
    """The client of one handshake-era request: questions go to it as server→client requests on that request's
    stream (over streamable HTTP: the request's own response stream)."""

    def __init__(self, ctx: ServerRequestContext[Any, Any]) -> None:
        self._session = ctx.session
        self._related = ServerMessageMetadata(related_request_id=ctx.request_id)
        can_elicit, can_sample = client_can(ctx) if ctx.session.can_send_request else (False, False)
        self.can_elicit = can_elicit
        self.can_sample = can_sample
        self.peer: object = _connection(ctx)

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult:
        return await self._session.send_request(
            types.ElicitRequest(params=params), types.ElicitResult, metadata=self._related
        )

    async def sample(self, params: types.CreateMessageRequestParams) -> SamplingAnswer:
        answer_type = types.CreateMessageResultWithTools if params.tools else types.CreateMessageResult
        return await self._session.send_request(
            types.CreateMessageRequest(params=params), answer_type, metadata=self._related
        )


def build_server(app: App, *, one_client: bool = False) -> Server[Any]:
    """The low-level MCP server for a running ``App``.

    ``one_client``: this server has exactly one client (stdio: one process per client), which owns one implicit
    session whatever its protocol version.
    """
    only_client = ConnectionSlot(state={})
    """The implicit session of this server's one client (``one_client``): it ends with the server."""

    def session_slot(ctx: ServerRequestContext[Any, Any]) -> ConnectionSlot | None:
        """Where the implicit session of this request's client lives, if it has one."""
        if app.executor.stateless or app.config.remote.stateless_http:
            # Stateless streamable HTTP makes every request its own connection: a session tied to one would end
            # with the request. Clients continue by the handle instead (remote.stateless_http).
            return None
        if one_client:
            return only_client
        connection = _connection(ctx)
        # On the 2026-07-28 protocol the SDK builds a fresh Connection for every request (even over stdio): only a
        # handshake-era connection lasts long enough to own a session.
        if connection.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None
        return ConnectionSlot(connection.state, on_close=connection.exit_stack.callback)

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        app.notices.watch(_connection(ctx))  # it holds a description now, so it hears when that changes
        return types.ListToolsResult(tools=[execute_program_tool(app)])

    async def follow(
        exchange: InputExchange,
        ctx: ServerRequestContext[Any, Any],
        finish: Callable[[RunResult], types.CallToolResult],
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Wait for the exchange's next questions or its result, reporting progress meanwhile."""

        def watch(reporter: RunReporter | None) -> Awaitable[RunResult | types.InputRequiredResult]:
            exchange.watcher = reporter
            return exchange.next()

        try:
            outcome = await reported(ctx, app.config.limits.max_output_bytes, watch)
        except anyio.get_cancelled_exc_class():
            app.exchanges.close(exchange)  # the client went away: the run is cancelled
            raise
        finally:
            exchange.watcher = None
        if isinstance(outcome, types.InputRequiredResult):
            return outcome
        app.exchanges.close(exchange)
        return finish(outcome)

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        if params.name != TOOL_NAME:
            return error_result(
                "invalid_input", f"unknown tool {params.name!r}; the only tool is {TOOL_NAME}"
            ).to_call_tool_result()
        try:
            arguments = ExecuteArguments.model_validate(params.arguments or {})
        except ValidationError as exc:
            return error_result("invalid_input", validation_problems(exc, whole="arguments")).to_call_tool_result()
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        owner = _caller_identity()
        binding = app.executor.sessions.bind(arguments.session, owner, session_slot(ctx))

        def finish(result: RunResult) -> types.CallToolResult:
            """The client's result, once a new session is bound to the client that keeps it (if one does)."""
            return result.to_call_tool_result(new_session=binding.finish(result))

        if modern and params.request_state is not None:  # a retry that answers the run's questions
            digest = arguments_digest(params.name, params.arguments)
            exchange = app.exchanges.find(params.request_state, owner, digest)
            if exchange is None:
                message = "unknown or expired requestState: send the call again without it to start a new run"
                return error_result("invalid_input", message).to_call_tool_result()
            exchange.answer(params.input_responses)
            return await follow(exchange, ctx, finish)
        request = ExecuteRequest(
            code=arguments.code,
            session=binding.handle,
            reset=arguments.reset,
            timeout_s=float(arguments.timeout_s) if arguments.timeout_s is not None else None,
            owner=owner,
        )
        if modern:
            can_elicit, can_sample = client_can(ctx)
            if can_elicit or can_sample:
                digest = arguments_digest(params.name, params.arguments)
                exchange = InputExchange(
                    owner=request.owner, digest=digest, can_elicit=can_elicit, can_sample=can_sample
                )
                app.exchanges.start(exchange, lambda ex: app.executor.execute(request, events=ex, channel=ex))
                return await follow(exchange, ctx, finish)
        channel = None if modern else RequestChannel(ctx)
        try:
            result = await reported(
                ctx,
                app.config.limits.max_output_bytes,
                lambda reporter: app.executor.execute(request, events=reporter, channel=channel),
            )
        except Exception as exc:  # a host bug answering this program: a typed result, never a protocol error
            log.exception("execute_program failed on the host")
            return error_result("sandbox_failure", f"the host failed while running it: {exc!r}").to_call_tool_result()
        return finish(result)

    server = _Server(
        "ptc-mcp",
        version=__version__,
        title="ptc-mcp: programmatic tool calling",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_subscriptions_listen=app.notices.listen_handler,
    )
    trace_only_when_collected(server)
    return server


def initialization_options(server: Server[Any]) -> Any:
    return server.create_initialization_options(NotificationOptions(tools_changed=True))

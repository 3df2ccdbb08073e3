"""One live MCP client session to one downstream server.

The session lives in its own task (the "holder"), so entering and leaving the SDK's transports happens in one
task and a failure of one server cannot tear down another. Calls come from any task: the SDK multiplexes
concurrent requests on one session by request id.

When the connection drops (a stdio server crashed, say) the pending calls fail with ``ToolCallError`` and the
next call opens a new connection, which restarts a stdio server. A ``tools/list_changed`` notification (or, at
protocol 2026-07-28, a ``subscriptions/listen`` event) refreshes the tool list.

The connection declares elicitation and sampling, so servers offer the tools that need them; a question a server
asks during a nested call goes to the client of the run that made the call (``ptc_mcp.interaction`` has the
attribution rule), or gets an error answer at once.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp import Client
from mcp.client.client import ConnectMode
from mcp.client.session import ClientRequestContext, IncomingMessage
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

import ptc_mcp
from ptc_mcp.config import ServerConfig, StdioServerConfig
from ptc_mcp.downstream.oauth import ServingOAuthProvider, oauth_auth
from ptc_mcp.downstream.transports import StderrTail, open_transport
from ptc_mcp.errors import ToolCallError, first_in_group
from ptc_mcp.interaction import CURRENT_INTERACTION, RunInteraction, SamplingAnswer, refusal
from ptc_mcp.text import valid_text

__all__ = ["CONNECT_TIMEOUT_S", "DownstreamServer", "describe_exception"]

logger = logging.getLogger(__name__)

MAX_TOOL_PAGES = 1000
"""A server whose ``tools/list`` cursor never ends cannot hang start-up."""
CONNECT_TIMEOUT_S = 60.0
"""How long one server may take to start and list its tools. Generous: on a loaded machine several node servers
starting side by side (each ``npx`` resolving its package first) take tens of seconds, and a bound that fires then
reports a working server as failed."""
CLOSE_GRACE_S = 5.0
"""How long closing waits for transports to shut down cleanly before cancelling them."""

_CONNECTION_IDS = itertools.count(1)
_CLIENT_INFO = types.Implementation(name="ptc-mcp", version=ptc_mcp.__version__)
_LOST_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, httpx2.TransportError, OSError)


def describe_exception(exc: BaseException) -> str:
    """A one-line description of ``exc``, looking through exception groups the transports' task groups add."""
    if isinstance(exc, BaseExceptionGroup):
        exc = first_in_group(exc, BaseException) or exc
    if isinstance(exc, MCPError):
        return f"{exc.message} (MCP error {exc.code})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(eq=False)
class _Link:
    """One connection; ``closing`` asks its holder task to close it."""

    client: Client | None = None
    closing: anyio.Event = field(default_factory=anyio.Event)


class DownstreamServer:
    """One downstream server: connects, lists its tools (all pages), calls them, reconnects after a drop.

    Use as an async context manager (it owns the task group its connection lives in), then ``await connect()``.
    ``on_tools_changed`` runs (synchronously) whenever the tool list changes, including the first listing.
    """

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        *,
        mode: ConnectMode = "auto",
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        on_tools_changed: Callable[[DownstreamServer], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.mode = mode
        self.connect_timeout_s = connect_timeout_s
        self.on_tools_changed = on_tools_changed
        self._tools: tuple[types.Tool, ...] = ()
        self.instructions: str | None = None
        """The server's ``instructions`` from its initialize (or discover) result, as of the last connection."""
        self.connection_id = 0
        """The current (or last) connection's number, unique in this process across all servers, so what a program
        learned about a server (observed result shapes) can last exactly one connection, even past a restart."""
        self._link: _Link | None = None
        self._tg: TaskGroup | None = None
        self._connect_lock = anyio.Lock()
        self._refresh_lock = anyio.Lock()
        # One auth per server, kept across reconnects: it holds the tokens and refreshes them.
        self._auth = oauth_auth(name, config) if not isinstance(config, StdioServerConfig) else None
        self._in_flight: dict[object, RunInteraction | None] = {}
        """Nested calls waiting for this server, and the run each belongs to (``None``: no run, e.g. ``check``)."""
        self._stderr = StderrTail()

    @property
    def tools(self) -> tuple[types.Tool, ...]:
        """The tools of the last successful listing, sorted by name (kept while reconnecting)."""
        return self._tools

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        link = self._link
        return link is not None and not link.closing.is_set()

    @property
    def login_needed(self) -> str | None:
        """Why this server needs ``ptc-mcp login`` (its OAuth tokens are missing or no longer refresh), or ``None``."""
        login = self._auth.login_needed if isinstance(self._auth, ServingOAuthProvider) else None
        return str(login) if login is not None else None

    @property
    def protocol_version(self) -> str | None:
        """The negotiated MCP protocol version of the open connection, if any."""
        link = self._link
        return link.client.protocol_version if link is not None and link.client is not None else None

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        if self._link is not None:
            self._link.closing.set()
        # Give transports a bounded moment to close cleanly (stdin EOF, HTTP session DELETE), then cancel.
        self._tg.cancel_scope.deadline = anyio.current_time() + CLOSE_GRACE_S
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            self._link = None

    async def connect(self) -> None:
        """Make sure a connection is open; raises ``ToolCallError`` when the server cannot be reached."""
        await self._ensure_link()

    async def aclose_connection(self) -> None:
        """Close the current connection (a stdio server is stopped); the next call reconnects."""
        if self._link is not None:
            self._drop(self._link)

    async def refresh_tools(self) -> tuple[types.Tool, ...]:
        """List the tools again (connecting first if needed) and return them."""
        link = await self._ensure_link()
        await self._refresh(link)
        return self._tools

    async def call_tool(
        self, tool: str, arguments: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> types.CallToolResult:
        """Call one tool; raises ``ToolCallError`` on timeout (``"timeout"``) or transport failure (``"tool_error"``).

        A downstream tool failure (``isError``) is a result, not an exception.
        """
        timeout = timeout_s if timeout_s is not None else self.config.timeout_s
        link = await self._ensure_link()
        assert link.client is not None
        where = f"{self.name}.{tool}"
        call = object()
        self._in_flight[call] = CURRENT_INTERACTION.get()
        try:
            # The SDK's own request timeout (it also sends the server a cancel): no second cancel scope on the hot
            # path. It keeps counting while the server asks the user a question (docs/questions.md#time).
            return await link.client.call_tool(tool, arguments or {}, read_timeout_seconds=timeout)
        except TimeoutError:  # the transport's own bounded write
            raise ToolCallError("timeout", f"{where} timed out after {timeout:g} s") from None
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                self._drop(link)
                if (login := self.login_needed) is not None:
                    raise ToolCallError("tool_error", f"{where}: {login}") from None
                message = f"{where}: the server closed the connection (did it crash?); it restarts on the next call"
                raise ToolCallError("tool_error", message) from None
            if exc.code == types.REQUEST_TIMEOUT:
                raise ToolCallError("timeout", f"{where} timed out after {timeout:g} s") from None
            message = f"{where} failed: {valid_text(exc.message)} (MCP error {exc.code})"
            raise ToolCallError("tool_error", message) from None
        except _LOST_ERRORS as exc:
            self._drop(link)
            if (login := self.login_needed) is not None:
                raise ToolCallError("tool_error", f"{where}: {login}") from None
            raise ToolCallError("tool_error", f"{where}: connection lost ({describe_exception(exc)})") from None
        except (RuntimeError, ValidationError) as exc:
            # The SDK raises these for results that break the tool's output schema or the protocol.
            message = f"{where} returned an invalid result: {describe_exception(exc)}"
            raise ToolCallError("tool_error", message) from None
        finally:
            del self._in_flight[call]

    # -- questions the server asks during a call --------------------------------------------------------------

    def _asker(self) -> RunInteraction | types.ErrorData:
        """The run a question is for: the calling task's run, else the one client with calls in flight."""
        current = CURRENT_INTERACTION.get()
        if current is not None:  # 2026-07-28: the question came back as the nested call's own result
            return current
        runs = list(self._in_flight.values())
        if not runs:
            return refusal("no nested call is waiting for this server, so nobody can answer")
        peers = {id(run.peer) if run is not None else None for run in runs}
        if len(peers) > 1 or runs[0] is None:
            return refusal(
                "nested calls of several clients are waiting for this server and the request does not say which "
                "call it belongs to, so ptc-mcp cannot tell whom to ask (ambiguous_question)"
            )
        return runs[0]

    async def _on_elicit(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        asker = self._asker()
        return asker if isinstance(asker, types.ErrorData) else await asker.elicit(params)

    async def _on_sample(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> SamplingAnswer | types.ErrorData:
        asker = self._asker()
        return asker if isinstance(asker, types.ErrorData) else await asker.sample(params)

    # -- connection lifecycle ------------------------------------------------------------------------------

    async def _ensure_link(self) -> _Link:
        link = self._link
        if link is not None and not link.closing.is_set():
            return link
        async with self._connect_lock:
            link = self._link
            if link is not None and not link.closing.is_set():
                return link
            if self._tg is None:
                raise ToolCallError("tool_error", f"server {self.name!r} is closed")
            try:
                with anyio.fail_after(self.connect_timeout_s):
                    await self._tg.start(self._hold)
            except TimeoutError:
                message = f"server {self.name!r} did not start within {self.connect_timeout_s:g} s"
                raise ToolCallError("tool_error", message + self._stderr_note()) from None
            except Exception as exc:
                if (login := self.login_needed) is not None:
                    raise ToolCallError("tool_error", login) from None
                message = f"cannot connect to server {self.name!r}: {describe_exception(exc)}"
                raise ToolCallError("tool_error", message + self._stderr_note()) from exc
            assert self._link is not None
            return self._link

    def _stderr_note(self) -> str:
        said = self._stderr.text()
        return f"; its stderr ends: {said}" if said else ""

    def _drop(self, link: _Link) -> None:
        if not link.closing.is_set():
            logger.warning("downstream server %r: connection lost; it reconnects on the next call", self.name)
        link.closing.set()
        if self._link is link:
            self._link = None

    async def _hold(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open one connection, publish it, and keep it open until asked to close or it breaks."""
        # This task (and the SDK's tasks answering server requests under it) belongs to no run, whichever run's
        # call happened to open the connection.
        CURRENT_INTERACTION.set(None)
        link = _Link()
        started = False

        async def on_message(message: IncomingMessage) -> None:
            await self._on_message(link, message)

        try:
            client = Client(
                open_transport(self.config, self._auth, self._stderr),
                mode=self.mode,
                cache=None,
                message_handler=on_message,
                client_info=_CLIENT_INFO,
                elicitation_callback=self._on_elicit,
                sampling_callback=self._on_sample,
            )
            async with client:
                link.client = client
                tools = await self._list_all(client)
                self.instructions = client.instructions
                self.connection_id = next(_CONNECTION_IDS)
                async with anyio.create_task_group() as tg:
                    if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                        await tg.start(self._listen, link)
                    self._link = link
                    if isinstance(self._auth, ServingOAuthProvider):
                        self._auth.login_needed = None
                    self._set_tools(tools)
                    started = True
                    task_status.started()
                    await link.closing.wait()
                    tg.cancel_scope.cancel()
        except Exception as exc:
            if not started:
                raise
            logger.warning("downstream server %r: connection ended: %s", self.name, describe_exception(exc))
        finally:
            link.closing.set()
            if self._link is link:
                self._link = None

    async def _listen(self, link: _Link, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """At protocol 2026-07-28, change events arrive on a ``subscriptions/listen`` stream."""
        assert link.client is not None
        async with AsyncExitStack() as stack:
            try:
                with anyio.fail_after(self.connect_timeout_s):
                    subscription = await stack.enter_async_context(link.client.listen(tools_list_changed=True))
            except Exception as exc:
                logger.info("downstream server %r: no change subscription (%s)", self.name, describe_exception(exc))
                task_status.started()
                return
            task_status.started()
            try:
                async for _event in subscription:
                    await self._refresh(link)
            except Exception as exc:
                logger.info("downstream server %r: change subscription ended (%s)", self.name, describe_exception(exc))

    async def _on_message(self, link: _Link, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            if self._tg is not None:
                self._tg.start_soon(self._refresh, link)
        elif isinstance(message, Exception):
            logger.warning("downstream server %r: transport error: %s", self.name, describe_exception(message))
        await anyio.lowlevel.checkpoint()

    # -- tool catalog ----------------------------------------------------------------------------------------

    async def _list_all(self, client: Client) -> tuple[types.Tool, ...]:
        """Every page of ``tools/list``, following ``next_cursor``."""
        tools: dict[str, types.Tool] = {}
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_TOOL_PAGES):
            page = await client.list_tools(cursor=cursor)
            for tool in page.tools:
                tools.setdefault(tool.name, tool)
            cursor = page.next_cursor
            if cursor is None or cursor in seen:
                break
            seen.add(cursor)
        else:
            logger.warning("downstream server %r: stopped listing tools after %d pages", self.name, MAX_TOOL_PAGES)
        return tuple(sorted(tools.values(), key=lambda tool: tool.name))

    async def _refresh(self, link: _Link) -> None:
        if link.client is None or link.closing.is_set():
            return
        async with self._refresh_lock:
            try:
                with anyio.fail_after(self.connect_timeout_s):
                    tools = await self._list_all(link.client)
            except Exception as exc:
                logger.warning("downstream server %r: refreshing tools failed: %s", self.name, describe_exception(exc))
                return
            if not link.closing.is_set():
                self._set_tools(tools)

    def _set_tools(self, tools: tuple[types.Tool, ...]) -> None:
        if tools == self._tools:
            return
        self._tools = tools
        if self.on_tools_changed is not None:
            try:
                self.on_tools_changed(self)
            except Exception:
                logger.exception("downstream server %r: tools-changed callback failed", self.name)

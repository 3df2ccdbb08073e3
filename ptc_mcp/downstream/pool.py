"""All configured downstream servers, connected at start-up, as one tool catalog.

A server that fails to start is recorded in ``failures`` (and logged); the others keep working, and the
failed one is tried again by ``refresh()`` or by the next call to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import anyio
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp.client.client import ConnectMode

from ptc_mcp.catalog.model import DownstreamTool, ServerInfo
from ptc_mcp.config import Config, ServerConfig
from ptc_mcp.downstream.connection import CONNECT_TIMEOUT_S, DownstreamServer, describe_exception
from ptc_mcp.errors import ToolCallError

__all__ = ["DownstreamPool", "DownstreamTool", "ReconfigureResult"]

logger = logging.getLogger(__name__)

ChangeCallback = Callable[[], None]


@dataclass(frozen=True)
class ReconfigureResult:
    """What ``DownstreamPool.reconfigure`` changed, by server name."""

    added: list[str]
    removed: list[str]
    restarted: list[str]


@dataclass(eq=False)
class _Holder:
    """The task that keeps one server open: ``stop`` asks it to close the server, ``done`` says it has."""

    stop: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)


class DownstreamPool:
    """Connections to every configured downstream server; an async context manager.

    ``catalog_version`` increases whenever ``tools()`` may have changed; ``on_change`` callbacks run then.
    """

    def __init__(
        self,
        servers: Mapping[str, ServerConfig],
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        mode: ConnectMode = "auto",
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._mode = mode
        self._servers = {name: self._new_server(name, config) for name, config in sorted(servers.items())}
        self.failures: dict[str, str] = {}
        """Servers that could not be reached: name → why."""
        self.catalog_version = 0
        self._callbacks: list[ChangeCallback] = []
        self._tg: TaskGroup | None = None
        self._holders: dict[DownstreamServer, _Holder] = {}
        self._reconfigure_lock = anyio.Lock()

    @classmethod
    def from_config(cls, config: Config, **options: Any) -> DownstreamPool:
        """A pool of the config's ``mcpServers``."""
        return cls(config.mcp_servers, **options)

    async def __aenter__(self) -> Self:
        # Each server lives in its own task of this group, so one can be stopped or added later (reconfigure)
        # from any task: a task group must be left by the task that entered it.
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            async with anyio.create_task_group() as tg:
                for name in self._servers:
                    tg.start_soon(self._start, name)
        except BaseException as exc:
            await self._close(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await self._close(exc_type, exc, tb)

    async def _close(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg, self._tg = self._tg, None
        if tg is None:
            return None
        for holder in self._holders.values():
            holder.stop.set()
        return await tg.__aexit__(exc_type, exc, tb)

    async def reconfigure(self, servers: Mapping[str, ServerConfig]) -> ReconfigureResult:
        """Make the pool serve ``servers``: start new entries, stop removed ones, restart changed ones.

        Unchanged servers keep their connections, and calls in flight to them are untouched; a call in flight to a
        stopped server fails with ``ToolCallError``. The catalog changes once, at the end.
        """
        async with self._reconfigure_lock:
            changed = [
                name for name in servers if name in self._servers and self._servers[name].config != servers[name]
            ]
            removed = [name for name in self._servers if name not in servers]
            added = [name for name in servers if name not in self._servers]
            for name in (*removed, *changed):
                await self._stop(name)
            for name in (*added, *changed):
                self._servers[name] = self._new_server(name, servers[name])
            self._servers = dict(sorted(self._servers.items()))
            async with anyio.create_task_group() as tg:
                for name in (*added, *changed):
                    tg.start_soon(self._start, name)
            result = ReconfigureResult(added=sorted(added), removed=sorted(removed), restarted=sorted(changed))
            if result.added or result.removed or result.restarted:
                logger.warning("downstream servers reconfigured: %s", result)
                self._bump()
            return result

    def _new_server(self, name: str, config: ServerConfig) -> DownstreamServer:
        return DownstreamServer(
            name,
            config,
            mode=self._mode,
            connect_timeout_s=self._connect_timeout_s,
            on_tools_changed=self._tools_changed,
        )

    async def _start(self, name: str) -> None:
        server = self._servers[name]
        if self._tg is None:
            raise RuntimeError("the pool is closed")
        await self._tg.start(self._hold, server)
        await self._connect(name)

    async def _hold(
        self, server: DownstreamServer, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        holder = self._holders[server] = _Holder()
        try:
            async with server:
                task_status.started()
                await holder.stop.wait()
        finally:
            del self._holders[server]
            holder.done.set()

    async def _stop(self, name: str) -> None:
        server = self._servers.pop(name)
        self.failures.pop(name, None)
        holder = self._holders.get(server)
        if holder is None:
            return
        holder.stop.set()
        with anyio.CancelScope(shield=True):
            await holder.done.wait()

    @property
    def servers(self) -> Mapping[str, DownstreamServer]:
        """Every configured server, by name (including failed ones)."""
        return self._servers

    def tools(self) -> list[DownstreamTool]:
        """The tools of every reachable server, ordered by server name, then tool name."""
        return [
            DownstreamTool(name, tool)
            for name, server in self._servers.items()
            if name not in self.failures
            for tool in server.tools
        ]

    def server_info(self) -> dict[str, ServerInfo]:
        """Instructions and connection number (0 while not connected) of every reachable server."""
        return {
            name: ServerInfo(
                instructions=server.instructions, connection=server.connection_id if server.connected else 0
            )
            for name, server in self._servers.items()
            if name not in self.failures
        }

    def on_change(self, callback: ChangeCallback) -> Callable[[], None]:
        """Run ``callback()`` whenever the catalog changes; returns a function that unsubscribes."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    async def refresh(self) -> None:
        """List every server's tools again, and retry servers that failed."""
        async with anyio.create_task_group() as tg:
            for name in self._servers:
                tg.start_soon(self._connect, name, True)

    async def call_tool(
        self, server: str, tool: str, arguments: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> types.CallToolResult:
        """Call ``server.tool``; raises ``ToolCallError("tool_error", ...)`` for an unknown server, a timeout or
        a broken connection. A failed tool is a result with ``is_error`` set, not an exception."""
        target = self._servers.get(server)
        if target is None:
            raise ToolCallError("tool_error", f"unknown server {server!r}")
        result = await target.call_tool(tool, arguments, timeout_s)
        if server in self.failures:
            # It answered, so it was reconnected by this call.
            del self.failures[server]
            self._bump()
        return result

    async def _connect(self, name: str, refresh: bool = False) -> None:
        server = self._servers.get(name)
        if server is None:
            return  # removed by a reconfigure meanwhile
        try:
            if refresh:
                await server.refresh_tools()
            else:
                await server.connect()
        except ToolCallError as exc:
            self._fail(name, exc.message)
        except Exception as exc:
            self._fail(name, describe_exception(exc))
        else:
            if self.failures.pop(name, None) is not None:
                self._bump()

    def _fail(self, name: str, message: str) -> None:
        logger.error("downstream server %r is unavailable: %s", name, message)
        if self.failures.get(name) is None:
            self.failures[name] = message
            self._bump()
        else:
            self.failures[name] = message

    def _tools_changed(self, server: DownstreamServer) -> None:
        self._bump()

    def _bump(self) -> None:
        self.catalog_version += 1
        for callback in list(self._callbacks):
            try:
                callback()
            except Exception:
                logger.exception("catalog change callback failed")

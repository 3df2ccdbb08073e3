"""All configured downstream servers, connected at start-up, as one tool catalog.

A server that fails to start is recorded in ``failures`` (and logged); the others keep working, and the
failed one is tried again by ``refresh()`` or by the next call to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

import anyio
import mcp_types as types
from mcp.client.client import ConnectMode

from ptc_mcp.catalog.model import DownstreamTool
from ptc_mcp.config import Config, ServerConfig
from ptc_mcp.downstream.connection import DownstreamServer, describe_exception
from ptc_mcp.errors import ToolCallError

__all__ = ["DownstreamPool", "DownstreamTool"]

logger = logging.getLogger(__name__)

ChangeCallback = Callable[[], None]


class DownstreamPool:
    """Connections to every configured downstream server; an async context manager.

    ``catalog_version`` increases whenever ``tools()`` may have changed; ``on_change`` callbacks run then.
    """

    def __init__(
        self,
        servers: Mapping[str, ServerConfig],
        *,
        connect_timeout_s: float = 30.0,
        mode: ConnectMode = "auto",
    ) -> None:
        self._servers = {
            name: DownstreamServer(
                name, config, mode=mode, connect_timeout_s=connect_timeout_s, on_tools_changed=self._tools_changed
            )
            for name, config in sorted(servers.items())
        }
        self.failures: dict[str, str] = {}
        """Servers that could not be reached: name → why."""
        self.catalog_version = 0
        self._callbacks: list[ChangeCallback] = []
        self._stack: AsyncExitStack | None = None

    @classmethod
    def from_config(cls, config: Config, **options: Any) -> DownstreamPool:
        """A pool of the config's ``mcpServers``."""
        return cls(config.mcp_servers, **options)

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            for server in self._servers.values():
                await stack.enter_async_context(server)
            async with anyio.create_task_group() as tg:
                for name in self._servers:
                    tg.start_soon(self._connect, name)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)

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
        server = self._servers[name]
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

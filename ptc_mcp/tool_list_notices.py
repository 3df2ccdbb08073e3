"""Telling ptc-mcp's own clients that ``execute_program`` changed, so their next ``tools/list`` is current.

The description of ``execute_program`` lists the downstream tools; when a downstream server announces new tools
(or one fails or comes back) the description changes. Clients hear of it the way their protocol era allows:

- handshake-era connections (up to 2025-11-25) that have listed the tools get ``notifications/tools/list_changed``
  on their standalone channel (the stdio pipe, the HTTP GET stream);
- 2026-07-28 clients open a ``subscriptions/listen`` stream (the SDK's ``ListenHandler``) and get a
  ``ToolsListChanged`` event on it.

Only a change of the description's text is announced, so prompt caches keyed on it are not thrown away for nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

__all__ = ["ToolListNotices"]

logger = logging.getLogger(__name__)


class ToolListNotices:
    """Announces changes of ``describe()`` to every watched connection and every listen stream.

    ``changed()`` is synchronous (catalog callbacks are); ``run()`` does the sending, in a task its owner starts.
    """

    def __init__(self, describe: Callable[[], str]) -> None:
        self.bus = InMemorySubscriptionBus()
        self.listen_handler = ListenHandler(self.bus)
        """Serves ``subscriptions/listen`` (pass it as the server's ``on_subscriptions_listen``)."""
        self._describe = describe
        self._announced = describe()
        self._connections: set[Any] = set()
        self._pending = anyio.Event()

    def watch(self, connection: Any) -> None:
        """Tell this handshake-era connection (an SDK ``Connection``) about later changes, until it closes."""
        if connection is None or connection in self._connections:
            return
        if connection.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return  # 2026-07-28 clients subscribe with subscriptions/listen instead
        self._connections.add(connection)
        connection.exit_stack.callback(self._connections.discard, connection)

    def changed(self) -> None:
        """The catalog may have changed: announce it if the description did."""
        self._pending.set()

    async def run(self) -> None:
        """Send announcements as changes come, until cancelled."""
        while True:
            await self._pending.wait()
            self._pending = anyio.Event()
            description = self._describe()
            if description == self._announced:
                continue
            self._announced = description
            logger.info("execute_program's tool list changed; telling %d connection(s)", len(self._connections))
            for connection in list(self._connections):
                await connection.send_tool_list_changed()  # best effort: the SDK drops it on a closed channel
            await self.bus.publish(ToolsListChanged())

"""Wires the parts together: config → downstream pool → tool bridge → sandbox backend → executor.

Every face of ptc-mcp (``serve``, ``check``, ``demo``, ``bench``, the proxy) opens the same ``App``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from ptc_mcp.approvals import ApprovalRule
from ptc_mcp.audit import AuditLog
from ptc_mcp.bridge import ToolBridge
from ptc_mcp.capacity import raise_open_file_limit
from ptc_mcp.catalog.policy import ToolPolicy
from ptc_mcp.config import Config
from ptc_mcp.downstream.pool import DownstreamPool
from ptc_mcp.executor import Executor
from ptc_mcp.input_exchange import InputExchanges
from ptc_mcp.sandboxes import create_backend
from ptc_mcp.sandboxes.base import SandboxBackend
from ptc_mcp.sessions import SessionDirectory
from ptc_mcp.tool_list_notices import ToolListNotices

DirectoryFactory = Callable[[Config, SandboxBackend], SessionDirectory | None]
"""Where sessions live beyond this instance, for a config and backend (``None``: nowhere, sessions are local)."""

READY_LOGGER = "ptc_mcp.ready"
"""The logger of the one line ``serve`` writes when it is ready; shown at the default log level (``cli``)."""


@dataclass
class App:
    """A running ptc-mcp: its config and parts."""

    config: Config
    pool: DownstreamPool
    bridge: ToolBridge
    backend: SandboxBackend
    executor: Executor
    notices: ToolListNotices
    """Tells the server's clients when ``execute_program``'s description changes."""
    exchanges: InputExchanges
    """Runs that ask a 2026-07-28 client questions across several requests (``ptc_mcp.input_exchange``)."""

    def ready_line(self, transport: str, address: str | None = None) -> str:
        """One line that says what is serving: transport, address, sandbox, servers and tools."""
        where = f"{transport} on {address}" if address else transport
        sandbox = f"{self.backend.kind} ({'isolated' if self.backend.isolated else 'NOT ISOLATED'})"
        names = list(self.pool.servers)
        failed = [name for name in names if name in self.pool.failures]
        servers = f"{len(names)} server{'s' if len(names) != 1 else ''}"
        if failed:
            servers += f" ({len(failed)} unavailable: {', '.join(failed)})"
        tools = len(self.bridge.snapshot.tools)
        return f"ptc-mcp ready: {where} · sandbox {sandbox} · {servers} · {tools} tools"

    def announce_ready(self, transport: str, address: str | None = None) -> None:
        logging.getLogger(READY_LOGGER).info("%s", self.ready_line(transport, address))


@asynccontextmanager
async def open_app(
    config: Config,
    *,
    backend: SandboxBackend | None = None,
    allow_unisolated: bool | None = None,
    session_directory: DirectoryFactory | None = None,
) -> AsyncIterator[App]:
    """Start everything (the sandbox backend first, so a missing sandbox fails before servers start).

    ``session_directory``: where sessions live beyond this instance (the faces that serve a network pass
    ``ptc_mcp.remote.shared_sessions.shared_directory``); by default nowhere.
    """
    raise_open_file_limit()  # max_sessions was sized for the hard limit: each session holds a few pipes
    backend = backend or create_backend(config, allow_unisolated=allow_unisolated)
    try:
        async with DownstreamPool.from_config(config) as pool:
            bridge = ToolBridge(
                pool,
                ToolPolicy(config.tools.allow, config.tools.deny, config.tools.read_only),
                approvals=ApprovalRule(config.tools.approve, config.tools.approve_destructive),
                input_timeout_s=config.limits.input_timeout_s,
            )
            directory = session_directory(config, backend) if session_directory is not None else None
            executor = Executor(
                backend,
                bridge,
                config.limits,
                stateless=config.sandbox.stateless,
                session_idle_s=config.sandbox.session_idle_s,
                max_sessions=config.sandbox.max_sessions,
                unclaimed_session_idle_s=config.sandbox.unclaimed_session_idle_s,
                audit=AuditLog.from_config(config.audit),
                session_directory=directory,
            )
            notices = ToolListNotices(lambda: bridge.snapshot.description)
            unsubscribe = pool.on_change(notices.changed)
            async with (
                executor,
                InputExchanges(keep_s=config.limits.input_timeout_s) as exchanges,
                anyio.create_task_group() as background,
            ):
                background.start_soon(notices.run)
                yield App(
                    config=config,
                    pool=pool,
                    bridge=bridge,
                    backend=backend,
                    executor=executor,
                    notices=notices,
                    exchanges=exchanges,
                )
                background.cancel_scope.cancel()
            unsubscribe()
    finally:
        await backend.aclose()

"""Reloading the config while ``serve`` runs: on SIGHUP, or when the file changes.

Only ``mcpServers`` is applied live: new servers start, removed ones stop, changed ones restart, and the others keep
their connections. Sandbox sessions are not touched, so clients keep their variables; their next ``tools/list`` and
the next program see the new catalog (``ptc_mcp.tool_list_notices`` tells them). A file that does not load is
logged and ignored: the running servers stay as they are. Other sections take effect on the next start.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

import anyio

from ptc_mcp.app import App
from ptc_mcp.config import load_config
from ptc_mcp.errors import ConfigError

__all__ = ["POLL_ENV", "POLL_S", "reload_config", "watch_config"]

logger = logging.getLogger(__name__)

POLL_S = 1.0
"""How often the config file's modification time and size are looked at (a stat call: cheap)."""
POLL_ENV = "PTC_MCP_RELOAD_POLL_S"
"""Another interval in seconds; 0 watches for SIGHUP only."""


async def reload_config(app: App, path: str | Path, exclude: Sequence[str] = ()) -> bool:
    """Load ``path`` (without the ``--exclude`` entries) and apply its ``mcpServers``; whether it loaded."""
    try:
        config = await anyio.to_thread.run_sync(functools.partial(load_config, path, exclude=exclude))
    except ConfigError as exc:
        logger.error("config reload: %s; the running servers stay as they are", exc)
        return False
    unapplied = [
        name
        for name in type(config).model_fields
        if name != "mcp_servers" and getattr(config, name) != getattr(app.config, name)
    ]
    if unapplied:
        logger.warning("config reload: changes to %s take effect when ptc-mcp restarts", ", ".join(unapplied))
    result = await app.pool.reconfigure(config.mcp_servers)
    app.config = app.config.model_copy(update={"mcp_servers": config.mcp_servers})
    logger.info("config reload: added %s, removed %s, restarted %s", result.added, result.removed, result.restarted)
    return True


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


async def watch_config(app: App, path: str | Path, poll_s: float | None = None, exclude: Sequence[str] = ()) -> None:
    """Reload on SIGHUP (where there is one) and whenever the file's stamp changes; runs until cancelled."""
    path = Path(path)
    if poll_s is None:
        poll_s = float(os.environ.get(POLL_ENV) or POLL_S)
    async with anyio.create_task_group() as tg:
        if hasattr(signal, "SIGHUP"):
            tg.start_soon(_on_sighup, app, path, exclude)
        stamp = _stamp(path)
        while poll_s > 0:
            await anyio.sleep(poll_s)
            current = _stamp(path)
            if current is not None and current != stamp:
                stamp = current
                await reload_config(app, path, exclude)


async def _on_sighup(app: App, path: Path, exclude: Sequence[str]) -> None:
    with anyio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _signal in signals:
            logger.info("SIGHUP: reloading %s", path)
            await reload_config(app, path, exclude)

"""Fixtures shared by the whole suite; keep this small."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ptc_mcp.app import App, open_app
from ptc_mcp.config import Config, parse_config

EXPENSES_STDIO: dict[str, Any] = {"command": sys.executable, "args": ["-m", "ptc_mcp.examples.expenses"]}
"""The bundled example server over stdio, as an ``mcpServers`` entry."""

TIME_STDIO: dict[str, Any] = {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}
"""The third-party ``mcp-server-time`` (PyPI) over stdio."""

OpenTestApp = Callable[..., AbstractAsyncContextManager[App]]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio."""
    return "asyncio"


def test_config(servers: dict[str, Any] | None = None, **sections: Any) -> Config:
    """A validated config: the example server by default, the ``process`` sandbox, short timeouts."""
    document: dict[str, Any] = {
        "mcpServers": {"expenses": EXPENSES_STDIO} if servers is None else servers,
        "sandbox": {"kind": "process"},
        "limits": {"timeout_s": 20},
    }
    for key, value in sections.items():
        document[key] = {**document.get(key, {}), **value}
    return parse_config(document, environ={})


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture
def open_test_app() -> OpenTestApp:
    """``async with open_test_app(servers=..., limits={...}) as app``: a running App on the process sandbox."""

    @asynccontextmanager
    async def opener(servers: dict[str, Any] | None = None, **sections: Any) -> AsyncIterator[App]:
        async with open_app(test_config(servers, **sections), allow_unisolated=True) as app:
            yield app

    return opener


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot), or ``None`` if it is gone or a zombie: tells reused pids apart."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant of it (by parent pid), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None and fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def server_memory_missing() -> str | None:
    """Why ``@modelcontextprotocol/server-memory`` cannot run here (``None``: it can); tests never download it."""
    if shutil.which("npx") is None:
        return "node/npx is not on PATH"
    if shutil.which("mcp-server-memory") is None:
        return "run `npm install -g @modelcontextprotocol/server-memory` (tests never download packages)"
    return None


class NoTools:
    """A ``ToolSource`` with no tools, for programs that call none: a call that reaches it fails the test."""

    catalog_version = 1
    failures: dict[str, str] = {}

    def server_info(self) -> dict[str, Any]:
        return {}

    def tools(self) -> list[Any]:
        return []

    async def call_tool(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no call may reach a downstream server")

"""Configs of the servers the downstream tests start."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ptc_mcp.config import StdioServerConfig

FIXTURE_SERVER = Path(__file__).with_name("fixture_server.py")


def fixture_server(**options: Any) -> StdioServerConfig:
    """The paginating test server (tests/downstream/fixture_server.py) over stdio."""
    return StdioServerConfig(command=sys.executable, args=[str(FIXTURE_SERVER)], **options)


def expenses_stdio(**options: Any) -> StdioServerConfig:
    """The example expense server over stdio."""
    return StdioServerConfig(command=sys.executable, args=["-m", "ptc_mcp.examples.expenses"], **options)


def text_of(result: Any) -> str:
    """The first text block of a CallToolResult."""
    return str(result.content[0].text)

"""Where ptc-mcp keeps a user's files (the token store of downstream OAuth logins)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["TOKEN_DIR_ENV", "default_token_dir"]

TOKEN_DIR_ENV = "PTC_MCP_TOKEN_DIR"
"""Where the token store lives, instead of the user's config dir."""


def default_token_dir() -> Path:
    """``$PTC_MCP_TOKEN_DIR``, else ``ptc-mcp/tokens`` under the user's config dir."""
    if override := os.environ.get(TOKEN_DIR_ENV):
        return Path(override)
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "ptc-mcp" / "tokens"

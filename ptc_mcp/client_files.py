"""Client config files, accepted as they are: the ``mcpServers`` of Claude Desktop, Claude Code, Cursor, Cline and
Roo, and the ``servers`` of VS Code.

``normalize`` turns such a document into ptc-mcp's own shape before validation. Keys that belong to a client
(``globalShortcut``, ``preferences``, ``inputs``, per entry ``autoApprove``, ``alwaysAllow`` …) are dropped and
named once in ``ClientFile.ignored``; entries with ``"disabled": true`` and entries named by ``--exclude`` are
left out. A few client keys carry meaning ptc-mcp can keep: Cline/Roo's ``timeout`` (seconds per call) becomes
``timeout_s``, Cline's ``transportType`` becomes ``type``, VS Code's and Cursor's ``envFile`` is read into ``env``,
Roo's ``disabledTools`` joins ``tools.deny``.

ptc-mcp's own sections stay strict: an unknown key that looks like a misspelling of one of ours (``limts``,
``comand``) is kept, so validation fails naming it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptc_mcp.errors import ConfigError

__all__ = ["ClientFile", "normalize"]

OWN_SECTIONS = ("mcpServers", "sandbox", "limits", "tools", "audit", "remote")
"""ptc-mcp's own top-level sections (``config.py`` passes the current list through ``own_sections``)."""
ENTRY_KEYS = ("type", "command", "args", "env", "cwd", "url", "headers", "timeout_s")
"""The keys of an ``mcpServers`` entry ptc-mcp reads (``config.py`` adds ones of its own through ``own_entry_keys``)."""
_TYPES = {"streamableHttp": "http", "streamable-http": "http", "streamable_http": "http", "local": "stdio"}
_TYPO_CUTOFF = 0.8


@dataclass
class ClientFile:
    """The document in ptc-mcp's shape, and what was left out of it."""

    document: dict[str, Any]
    ignored: list[str] = field(default_factory=list)
    """Client keys that were dropped, as paths (``preferences``, ``mcpServers.git.autoApprove``)."""
    skipped: list[str] = field(default_factory=list)
    """Entries not started: ``name (disabled)`` or ``name (--exclude)``."""

    def summary(self) -> str | None:
        """One log line naming what was left out, or ``None`` when nothing was."""
        parts = []
        if self.ignored:
            parts.append("ignored client keys: " + ", ".join(self.ignored))
        if self.skipped:
            parts.append("servers not started: " + ", ".join(self.skipped))
        return "; ".join(parts) or None


def _looks_like(key: str, known: Iterable[str]) -> bool:
    return bool(difflib.get_close_matches(key, list(known), n=1, cutoff=_TYPO_CUTOFF))


def _read_env_file(path: str, where: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, optional ``export`` and quotes), as VS Code and Cursor read them."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _entry(name: str, raw: Any, own_keys: Iterable[str], result: ClientFile, deny: list[str]) -> dict[str, Any] | None:
    """One server entry in ptc-mcp's shape, or ``None`` when it is disabled."""
    if not isinstance(raw, Mapping):
        return raw  # type: ignore[no-any-return]  # validation names the bad value
    where = f"mcpServers.{name}"
    own = set(own_keys)
    entry: dict[str, Any] = {}
    for key, value in raw.items():
        if key in own:
            entry[key] = value
        elif key == "disabled":
            if value is True:
                result.skipped.append(f"{name} (disabled)")
                return None
        elif key == "timeout" and isinstance(value, int | float) and not isinstance(value, bool):
            entry.setdefault("timeout_s", value)
        elif key == "transportType" and "type" not in raw:
            entry["type"] = value
        elif key == "envFile" and isinstance(value, str):
            pass  # read below, once ``env`` is known (whatever the keys' order)
        elif key == "disabledTools" and isinstance(value, list):
            deny.extend(f"{name}.{tool}" for tool in value if isinstance(tool, str))
        elif _looks_like(key, own):
            entry[key] = value  # a misspelling of ours: validation fails naming it
        else:
            result.ignored.append(f"{where}.{key}")
    env_file = raw.get("envFile")
    if isinstance(env_file, str):
        env = entry.get("env")
        entry["env"] = {**_read_env_file(env_file, f"{where}.envFile"), **(env if isinstance(env, Mapping) else {})}
    if isinstance(entry.get("type"), str):
        entry["type"] = _TYPES.get(entry["type"], entry["type"])
    elif "type" not in entry and str(entry.get("url", "")).rstrip("/").endswith("/sse"):
        entry["type"] = "sse"  # an untyped `/sse` endpoint is the legacy transport (Cursor falls back to it too)
    return entry


def normalize(
    data: Mapping[str, Any],
    exclude: Iterable[str] = (),
    own_entry_keys: Iterable[str] = ENTRY_KEYS,
    own_sections: Iterable[str] = OWN_SECTIONS,
) -> ClientFile:
    """``data`` in ptc-mcp's shape; raises ``ConfigError`` when ``exclude`` names no server."""
    result = ClientFile(document={})
    source = "mcpServers"
    servers: Any = data.get("mcpServers")
    nested = data.get("mcp")
    if servers is None and isinstance(data.get("servers"), Mapping):
        source, servers = "servers", data["servers"]  # VS Code's .vscode/mcp.json
    elif servers is None and isinstance(nested, Mapping) and isinstance(nested.get("servers"), Mapping):
        source, servers = "mcp", nested["servers"]  # VS Code's settings.json
    sections = tuple(own_sections)
    for key, value in data.items():
        if key in sections or _looks_like(key, sections):
            result.document[key] = value
        elif key != source:
            result.ignored.append(key)
    exclude = list(exclude)
    if not isinstance(servers, Mapping):
        if servers is not None:
            result.document["mcpServers"] = servers  # validation names the bad value
        servers = {}
    missing = [name for name in exclude if name not in servers]
    if missing:
        names = ", ".join(sorted(servers)) or "none"
        raise ConfigError(f"--exclude {missing[0]}: no such server in the config (servers: {names})")
    own_keys = tuple(own_entry_keys)
    deny: list[str] = []
    entries: dict[str, Any] = {}
    for name, raw in servers.items():
        if name in exclude:
            result.skipped.append(f"{name} (--exclude)")
            continue
        entry = _entry(str(name), raw, own_keys, result, deny)
        if entry is not None:
            entries[name] = entry
    if servers or source in data:
        result.document["mcpServers"] = entries
    if deny:
        tools = result.document.get("tools")
        tools = dict(tools) if isinstance(tools, Mapping) else {}
        tools["deny"] = [*tools.get("deny", []), *deny]
        result.document["tools"] = tools
    return result

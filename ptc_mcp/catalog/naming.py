"""Predictable Python identifiers for server and tool names (rules documented in docs/catalog.md).

1. Every character outside ``[A-Za-z0-9_]`` becomes ``_``; an empty name becomes ``_``.
2. A leading digit gets a ``_`` prefix.
3. A Python keyword (``keyword.kwlist``: ``class``, ``from``, ``async``, …) or a dunder name (``__x__``) gets a
   ``_`` suffix. Soft keywords (``match``, ``case``, ``type``, ``_``) are valid names and stay as they are.
4. Collisions within one namespace (servers; the tools of one server): names that already are their own
   identifier come first, then the others, each group sorted by code point; in that order the first keeps the
   identifier and later ones get ``_2``, ``_3``, … (the first suffix that is still free). So a tool called
   ``get_user`` is always ``get_user``, and ``get-user`` next to it becomes ``get_user_2``.

A server is bound as a bare global in the program unless its identifier is a standard-library module name, a
builtin, or a name of the in-program API (``RESERVED_GLOBALS``): such a server is reachable only through
``servers.<identifier>`` / ``servers["<name>"]``, so ``import time`` next to a server called ``time`` keeps
working. Every server is always reachable through ``servers``.
"""

from __future__ import annotations

import builtins
import keyword
import re
import sys
from collections.abc import Iterable

__all__ = [
    "RESERVED_GLOBALS",
    "ServerNames",
    "assign_identifiers",
    "global_name",
    "shadowing_reason",
    "to_identifier",
]

_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")

_KEYWORDS = frozenset(keyword.kwlist)  # hard keywords only: soft ones are valid names

RESERVED_GLOBALS = frozenset({"tools", "call_tool", "servers", "ToolError", "Binary", "asyncio"})
"""Names the runtime binds in every program; a server never takes one of them as a bare global."""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Modules removed from the standard library in 3.12/3.13: still importable on older sandbox Pythons, and
# keeping them makes the rule the same whatever Python the host runs.
_REMOVED_STDLIB = _words(
    "aifc asynchat asyncore audioop cgi cgitb chunk crypt distutils imghdr imp lib2to3 mailcap msilib nis "
    "nntplib ossaudiodev pipes smtpd sndhdr spwd sunau telnetlib uu xdrlib"
)
STDLIB_MODULES = frozenset(sys.stdlib_module_names) | _REMOVED_STDLIB
BUILTIN_NAMES = frozenset(dir(builtins))


def to_identifier(name: str) -> str:
    """The identifier for one name, before collision handling (rules 1 to 3)."""
    ident = _NOT_IDENT.sub("_", name) or "_"
    if ident[0].isdigit():
        ident = "_" + ident
    if ident in _KEYWORDS or (len(ident) > 4 and ident.startswith("__") and ident.endswith("__")):
        ident += "_"
    return ident


def assign_identifiers(names: Iterable[str], *, taken: Iterable[str] = ()) -> dict[str, str]:
    """Identifiers for every name of one namespace, collisions resolved by rule 4.

    ``taken`` lists identifiers that are already in use in the namespace (none of the names may get one).
    """
    used = set(taken)
    result: dict[str, str] = {}
    for name in sorted(set(names), key=lambda n: (to_identifier(n) != n, n)):
        base = to_identifier(name)
        ident = base
        counter = 2
        while ident in used:
            ident = f"{base}_{counter}"
            counter += 1
        used.add(ident)
        result[name] = ident
    return result


def shadowing_reason(ident: str) -> str | None:
    """Why a server identifier may not be a bare global (``None`` when it may)."""
    if ident in RESERVED_GLOBALS:
        return "a name of the in-program API"
    if ident in STDLIB_MODULES:
        return "a standard-library module"
    if ident in BUILTIN_NAMES:
        return "a builtin"
    return None


def global_name(ident: str) -> str | None:
    """The bare global a server with this identifier is bound to, or ``None`` (reach it via ``servers``)."""
    return None if shadowing_reason(ident) else ident


class ServerNames:
    """The identifiers of one set of servers and of each server's tools."""

    def __init__(self, tools_by_server: dict[str, list[str]]) -> None:
        self.server_ident = assign_identifiers(tools_by_server)
        self.tool_ident = {server: assign_identifiers(names) for server, names in tools_by_server.items()}

    def global_for(self, server: str) -> str | None:
        """The bare global of ``server``, or ``None``."""
        return global_name(self.server_ident[server])

    def reference(self, server: str) -> str:
        """How a program names the server: its global, else ``servers.<identifier>``."""
        bare = self.global_for(server)
        return bare if bare is not None else f"servers.{self.server_ident[server]}"

"""Which downstream tools programs may call: the ``tools`` section of the config.

Patterns are shell globs (``fnmatch``, case-sensitive) matched against ``"server.tool"`` with the original
names; ``*`` also matches dots. A pattern without a dot names a whole server (``"github"`` means
``"github.*"``). A tool is allowed when some ``allow`` pattern matches it and no ``deny`` pattern does: deny
wins. Denied tools are left out of the catalog, and a call to one fails with ``tool_denied``.

``allows`` also receives the tool's MCP annotations. With ``read_only`` (config ``tools.read_only: true``) only
tools that declare ``readOnlyHint: true`` are allowed, on top of the globs. Annotations are the server's own,
unverified claims: ``read_only`` keeps an honest server's writing tools away from programs, it does not stop a
server that lies; ``deny`` patterns do not depend on the server.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import mcp_types

from ptc_mcp.catalog.model import DownstreamTool

__all__ = ["ToolPolicy", "compile_globs"]


def compile_globs(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    expanded = [p if "." in p else f"{p}.*" for p in patterns]
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in expanded))


@dataclass(frozen=True)
class ToolPolicy:
    """Allow/deny globs on ``server.tool``, deny wins; with ``read_only``, only ``readOnlyHint`` tools."""

    allow: Sequence[str] = ("*",)
    deny: Sequence[str] = ()
    read_only: bool = False
    _allow: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _deny: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow", tuple(self.allow))
        object.__setattr__(self, "deny", tuple(self.deny))
        object.__setattr__(self, "_allow", compile_globs(self.allow))
        object.__setattr__(self, "_deny", compile_globs(self.deny))

    def allows(self, name: str, annotations: mcp_types.ToolAnnotations | None = None) -> bool:
        """Whether a program may call ``name`` (``"server.tool"``), given the tool's MCP ``annotations``."""
        return self.refusal(name, annotations) is None

    def refusal(self, name: str, annotations: mcp_types.ToolAnnotations | None = None) -> str | None:
        """Why ``name`` is not allowed (for the error a program sees), or ``None`` if it is."""
        if self._deny is not None and self._deny.match(name):
            return f"{name} matches a tools.deny pattern"
        if self._allow is None or self._allow.match(name) is None:
            return f"{name} matches no tools.allow pattern"
        if self.read_only and not (annotations is not None and annotations.read_only_hint is True):
            return f"tools.read_only allows only tools marked readOnlyHint, and {name} is not"
        return None

    def filter(self, tools: Iterable[DownstreamTool]) -> list[DownstreamTool]:
        """The tools this policy allows, in their original order."""
        return [t for t in tools if self.allows(t.qualified_name, t.tool.annotations)]

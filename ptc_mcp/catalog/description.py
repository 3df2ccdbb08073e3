"""The description of the ``execute_program`` tool: the calling convention, then the catalog.

The catalog comes in one of three presentations:

- ``full``: every tool's Python signature and the first line of its description;
- ``compact``: one line per tool: argument names and the first sentence;
- ``namespaces``: servers only, with tool counts and a few tool names; programs find the rest with
  ``tools.search()`` / ``tools.describe()``.

``auto`` picks the most detailed one that fits ``token_budget`` (then trims the namespace listing if even that
is too big). The text depends only on the tools and failures given, never on their order: the same servers
give byte-identical text, so prompt caches keep working.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import mcp_types

from ptc_mcp.catalog.model import DownstreamTool
from ptc_mcp.catalog.naming import to_identifier
from ptc_mcp.catalog.prepared import PreparedServer, PreparedTool, prepare_catalog
from ptc_mcp.catalog.signatures import first_sentence
from ptc_mcp.catalog.tokens import estimate_tokens

__all__ = [
    "PRESENTATIONS",
    "Presentation",
    "annotation_marks",
    "build_description",
    "choose_presentation",
    "instructions_line",
]

Presentation = Literal["full", "compact", "namespaces", "auto"]
PRESENTATIONS: tuple[Presentation, ...] = ("full", "compact", "namespaces", "auto")

_FULL_DOC_CHARS = 240
_COMPACT_DOC_CHARS = 90
_FAILURE_CHARS = 120
_INSTRUCTIONS_CHARS = 200
_NAMESPACE_INSTRUCTIONS_CHARS = 160
_EXAMPLES = 4

CONVENTION = """\
Runs Python that calls the tools below; only its prints and last expression's value come back.
- Tools are async functions with keyword arguments: `x = await server.tool(arg=1)`; top-level await works; \
`asyncio.gather` runs calls concurrently.
- Filter and compute in Python; print only what you need.
- Servers are globals unless noted, also `servers["name"]`; or `await call_tool("server.tool", {...})`.
- Find tools with `tools.search("topic")` and `tools.describe("server.tool")`.
- Results are structured content or JSON (dicts/lists) or str; binary `Binary` (`.data`, `.mime_type`); \
several blocks: a list; failures raise `ToolError`."""


def annotation_marks(tool: mcp_types.Tool) -> str:
    """``[read-only]``, ``[destructive]`` or ``[idempotent]`` from the tool's hints, or ``""``.

    Hints are the server's claims, shown so the model can be careful; they are not enforced.
    """
    hints = tool.annotations
    if hints is None:
        return ""
    if hints.read_only_hint:
        return "[read-only]"
    if hints.destructive_hint:
        return "[destructive]"
    if hints.idempotent_hint:
        return "[idempotent]"
    return ""


def build_description(
    tools: Iterable[DownstreamTool],
    *,
    presentation: Presentation = "auto",
    failures: Mapping[str, str] | None = None,
    token_budget: int = 1500,
    instructions: Mapping[str, str | None] | None = None,
) -> str:
    """The ``execute_program`` description for these tools (``presentation="auto"`` keeps to ``token_budget``).

    ``instructions``: server name → the ``instructions`` the server sent; shown capped under its name.
    """
    servers = prepare_catalog(tools, instructions)
    failed = _failures_block(failures or {})
    if presentation == "full":
        return _assemble(_full(servers), failed)
    if presentation == "compact":
        return _assemble(_compact(servers), failed)
    if presentation == "namespaces":
        return _assemble(_namespaces(servers, _EXAMPLES, len(servers)), failed)
    if presentation != "auto":
        raise ValueError(f"presentation must be one of {', '.join(PRESENTATIONS)}, got {presentation!r}")
    return _auto(servers, failed, token_budget)[1]


def choose_presentation(
    tools: Iterable[DownstreamTool],
    *,
    failures: Mapping[str, str] | None = None,
    token_budget: int = 1500,
    instructions: Mapping[str, str | None] | None = None,
) -> Presentation:
    """Which presentation ``auto`` picks for these tools and this budget."""
    return _auto(prepare_catalog(tools, instructions), _failures_block(failures or {}), token_budget)[0]


def _auto(servers: tuple[PreparedServer, ...], failed: str, budget: int) -> tuple[Presentation, str]:
    for kind, body in (("full", _full(servers)), ("compact", _compact(servers))):
        text = _assemble(body, failed)
        if estimate_tokens(text) <= budget:
            return kind, text  # type: ignore[return-value]
    # Namespaces, less and less detailed until it fits: fewer example names, then fewer servers listed.
    for examples in (_EXAMPLES, 2, 0):
        text = _assemble(_namespaces(servers, examples, len(servers)), failed)
        if estimate_tokens(text) <= budget:
            return "namespaces", text
    low, high = 0, len(servers)
    while low < high:  # the most servers that fit, found by bisection
        middle = (low + high + 1) // 2
        if estimate_tokens(_assemble(_namespaces(servers, 0, middle), failed)) <= budget:
            low = middle
        else:
            high = middle - 1
    return "namespaces", _assemble(_namespaces(servers, 0, low), failed)


def _assemble(catalog: str, failed: str) -> str:
    parts = [CONVENTION, catalog]
    if failed:
        parts.append(failed)
    return "\n\n".join(parts) + "\n"


def _server_heading(server: PreparedServer) -> str:
    notes = []
    if server.global_name is None:
        notes.append(f"reach it as servers.{server.ident}: `{server.ident}` is {server.shadow_reason}")
    elif server.ident != server.name:
        notes.append(f"as `{server.ident}`")
    suffix = f" ({'; '.join(notes)})" if notes else ""
    heading = f"## {server.name}{suffix}"  # the tools follow: no count needed
    note = instructions_line(server.instructions, _INSTRUCTIONS_CHARS)
    return f"{heading}\n{note}" if note else heading


def instructions_line(text: str, limit: int) -> str:
    """A server's instructions on one line, cut to ``limit``: markdown headings skipped, first paragraph only."""
    lines = [line for line in text.strip().splitlines() if not line.lstrip().startswith("#")]
    return _one_line("\n".join(lines), limit)


def _renamed(tool: PreparedTool) -> str:
    """The original name of a tool renamed past the plain identifier rule (``get_user_2`` for ``get-user``): only
    then is it not guessable (``call_tool`` and ``tools.describe`` accept ``get_user`` for ``get-user`` too)."""
    return f" [call_tool name {tool.qualified_name!r}]" if tool.attr != to_identifier(tool.name) else ""


def _marks(tool: PreparedTool) -> str:
    marks = annotation_marks(tool.tool)
    return f"  {marks}" if marks else ""


def _full(servers: tuple[PreparedServer, ...]) -> str:
    if not servers:
        return "No tools are available."
    optional = any(not p.required for s in servers for t in s.tools for p in t.signature.parameters)
    lines = ["Tools (`= ...`: may be left out):" if optional else "Tools:"]
    for server in servers:
        lines.append(_server_heading(server))
        for tool in server.tools:
            lines.append(f"{server.reference}.{tool.attr}{tool.signature.render()}{_marks(tool)}{_renamed(tool)}")
            doc = _one_line(_titled_doc(tool), _FULL_DOC_CHARS)
            if doc:
                lines.append(f"    {doc}")
    return "\n".join(lines)


def _compact(servers: tuple[PreparedServer, ...]) -> str:
    if not servers:
        return "No tools are available."
    lines = ['Tools (argument names, `?` = optional; tools.describe("server.tool") gives the full signature):']
    for server in servers:
        lines.append(_server_heading(server))
        for tool in server.tools:
            doc = first_sentence(_titled_doc(tool), _COMPACT_DOC_CHARS)
            lines.append(
                f"{server.reference}.{tool.attr}{tool.signature.render_short()}"
                f"{' — ' + doc if doc else ''}{_marks(tool)}{_renamed(tool)}"
            )
    return "\n".join(lines)


def _namespaces(servers: tuple[PreparedServer, ...], examples: int, shown: int) -> str:
    if not servers:
        return "No tools are available."
    total = sum(len(s.tools) for s in servers)
    lines = [
        f"{total} tools on {len(servers)} servers. Find tools inside your program with "
        '`tools.search("topic")` (names, signatures, summaries) and `tools.describe("server.tool")` (or '
        '`tools.describe("server")`: its tools).',
        "Servers:",
    ]
    for server in servers[:shown]:
        count = len(server.tools)
        text = f"- {server.name}"
        if server.global_name is None or server.ident != server.name:
            text += f" (as {server.reference})"
        text += f": {count} tool{'s' if count != 1 else ''}"
        if examples:
            names = _examples(server, examples)
            more = ", …" if count > examples else ""
            text += f", e.g. {', '.join(names)}{more}"
        note = instructions_line(server.instructions, _NAMESPACE_INSTRUCTIONS_CHARS)
        lines.append(f"{text} — {note}" if note else text)
    if shown < len(servers):
        lines.append(f"- … and {len(servers) - shown} more servers: `print(sorted(servers))` lists them all.")
    return "\n".join(lines)


def _examples(server: PreparedServer, count: int) -> list[str]:
    """A few tool names that show what the server does.

    Each pick is the shortest name (then the alphabetically first) among those sharing the fewest words with
    the names already picked, so the examples differ from each other and the choice is deterministic.
    """

    def words(name: str) -> set[str]:
        return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in name.lower().split("_") if w}

    remaining = sorted((t.attr for t in server.tools), key=lambda n: (len(n), n))
    chosen: list[str] = []
    seen: set[str] = set()
    while remaining and len(chosen) < count:
        best = min(remaining, key=lambda n: (len(words(n) & seen), len(n), n))
        remaining.remove(best)
        chosen.append(best)
        seen |= words(best)
    return sorted(chosen)


def _failures_block(failures: Mapping[str, str]) -> str:
    if not failures:
        return ""
    lines = ["Unavailable servers (failed to start; their tools cannot be called):"]
    for name in sorted(failures):
        message = _one_line(str(failures[name]), _FAILURE_CHARS)
        lines.append(f"- {name}: {message}" if message else f"- {name}")
    return "\n".join(lines)


def _titled_doc(tool: PreparedTool) -> str:
    title = tool.tool.title or (tool.tool.annotations.title if tool.tool.annotations else None)
    if title and tool.doc and title.strip().lower() not in tool.doc.lower():
        return f"{title.strip()}: {tool.doc}"
    return tool.doc


def _one_line(text: str, limit: int) -> str:
    """The first paragraph of ``text`` on one line, cut to ``limit`` characters with ``…``."""
    paragraph = text.strip().split("\n\n", 1)[0]
    line = " ".join(paragraph.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"

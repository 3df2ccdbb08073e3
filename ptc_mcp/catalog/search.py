"""``tools.search()`` and ``tools.describe()``: find tools by topic, read one tool's full definition.

Ranking is Okapi BM25 (k1 = 1.2, b = 0.75) over one bag of words per tool: the tool name (counted three times),
the server name and title (twice), the description, the argument names and descriptions, and ``enum`` values.
Words are split at ``snake_case``, ``camelCase``, ``kebab-case`` and punctuation boundaries, lowercased, stripped
of common English stop words and lightly stemmed, the same way for tools and queries. Everyday words and phrases
in a query also stand for the verbs tool names use ("tear down" → delete, "how many" → count), and a tool whose
name starts with such a verb is matched on it separately, so the verb picks among an entity's tools. The rules
and the measured hit rates are in docs/catalog.md.
"""

from __future__ import annotations

import inspect
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ptc_mcp.catalog.description import annotation_marks
from ptc_mcp.catalog.model import DownstreamTool
from ptc_mcp.catalog.observed import EXAMPLE_CHARS, ObservedShapes
from ptc_mcp.catalog.prepared import PreparedServer, PreparedTool, prepare_catalog
from ptc_mcp.catalog.runtime_catalog import ToolResolver, build_runtime_catalog
from ptc_mcp.catalog.signatures import first_sentence, result_fields

__all__ = ["ToolIndex", "tokenize"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_SEARCH_EXAMPLE_CHARS = 100
_INSTRUCTIONS_CHARS = 2000
_SERVER_TOOLS = 60
_MAX_CHOICES = 32
_K1 = 1.2
_B = 0.75
_NAME_WEIGHT = 3
_SERVER_WEIGHT = 2
_TITLE_WEIGHT = 2
_ACTION_WEIGHT = 1
_SYNONYM_WEIGHT = 0.75
_WORD = re.compile(r"[A-Z]{2,}s(?![a-z])|[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_FILE_NAME = re.compile(r"[A-Za-z0-9_-]\.[A-Za-z][A-Za-z0-9]{0,4}\b|(?:^|\s)~?/[\w.-]")
_LITERAL = re.compile(r"'((?:[^'\\]|\\.)*)'")
_STOP_WORDS = _words(
    "a an and are as at be by can do does for from has have how i in into is it its me my of on or "
    "our show so than that the their them then there these this to was what when where which who will "
    "with you your all any"
)

# Everyday words and two-word phrases for the verbs tool names start with ("how many" → count, "tear down" →
# delete). Plain English only: nothing here names a particular tool, server or domain.
_VERB_SYNONYMS = {
    "create": "add new make open start raise issue generate print publish compose draft register enroll "
    "provision launch store upload book|set up|spin up|jot down|sign up",
    "get": "fetch retrieve read lookup grab view inspect show|look up|pull up",
    "list": "which show exist browse enumerate",
    "update": "edit change modify rename adjust enable disable toggle tweak patch"
    "|turn on|turn off|switch on|switch off",
    "delete": "remove erase drop destroy discard wipe revoke kill cancel|tear down|get rid",
    "search": "find|look for",
    "count": "tally|how many|number of",
    "export": "download dump",
    "archive": "shelve hide",
    "restore": "recover undelete unarchive revert|bring back|roll back",
    "send": "notify tell ping mail",
    "post": "announce share ping",
    "read": "view inspect show",
    "write": "save",
    "run": "execute",
}


def _synonym_table() -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for verb, spec in _VERB_SYNONYMS.items():
        words, *phrases = spec.split("|")
        for key in words.split() + phrases:
            table.setdefault(key, []).append(verb)
    return {key: tuple(verbs) for key, verbs in table.items()}


_SYNONYMS = _synonym_table()
_UNDOUBLED = frozenset("bdfgkmnprt")


def _stem(word: str) -> str:
    """A light stemmer, the same for tools and queries: "create", "created", "creates", "creating" → "creat"."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and (word.endswith("sses") or (word.endswith("es") and word[-3] in "xz")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and any(c in "aeiouy" for c in word[:-1]):
        word = word[:-1]  # "ads" → "ad", but "dns" (no vowel) is an acronym
    for suffix in ("ing", "ed", "ment"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] in _UNDOUBLED:
                word = word[:-1]  # "running" → "run"
            break
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]  # "queue" and "queued" → "queu"
    return word


_ACTIONS = frozenset(_stem(verb) for verb in _VERB_SYNONYMS)
_ACTION = "action:"  # cannot collide with a word: words have no ":"


def tokenize(text: str) -> list[str]:
    """Search terms of a text: split at case/``_``/``-``/punctuation, lowercased, stop words out, stemmed."""
    terms = []
    for raw in _WORD.findall(text):
        if len(raw) > 2 and raw.endswith("s") and raw[:-1].isupper():
            raw = raw[:-1]  # "PRs" → "PR"
        word = raw.lower()
        if word in _STOP_WORDS:
            continue
        terms.append(_stem(word))
    return terms


def _query_weights(query: str) -> dict[str, float]:
    """The query's terms weigh 1; the verbs its everyday words and phrases stand for, and "file" for a file
    name or path in it ("notes.txt", "/var/log"), weigh ``_SYNONYM_WEIGHT``. A verb also asks for tools
    whose name starts with it (the ``action:`` term)."""
    implied: list[str] = []
    raw = _WORD.findall(query)
    words = [word.lower() for word in raw]
    literal = [True] * len(raw)
    for i in range(len(words) - 1):  # a phrase's words stand for its verb only: "get rid" is not "get"
        verbs = _SYNONYMS.get(f"{words[i]} {words[i + 1]}", ())
        if verbs:
            implied += verbs
            literal[i] = literal[i + 1] = False
    for word, keep in zip(words, literal, strict=True):
        if keep:
            implied += _SYNONYMS.get(word, ())
    if _FILE_NAME.search(query):
        implied.append("file")
    weights = {_stem(word): _SYNONYM_WEIGHT for word in implied}
    weights.update(dict.fromkeys(tokenize(" ".join(w for w, keep in zip(raw, literal, strict=True) if keep)), 1.0))
    for term, weight in list(weights.items()):
        if term in _ACTIONS:
            weights[_ACTION + term] = weight
    return weights


def _document(tool: PreparedTool) -> list[str]:
    """The tool's bag of words; repeating a field's words weighs that field more."""
    definition = tool.tool
    name = tokenize(tool.name)
    terms = name * _NAME_WEIGHT + tokenize(tool.server) * _SERVER_WEIGHT
    if len(name) > 1 and name[0] in _ACTIONS:
        terms += [_ACTION + name[0]] * _ACTION_WEIGHT
    title = definition.title or (definition.annotations.title if definition.annotations else None)
    if title:
        terms += tokenize(title) * _TITLE_WEIGHT
    terms += tokenize(tool.doc)
    for param in tool.signature.parameters:
        terms += tokenize(param.name) + tokenize(param.description)
        for choice in _LITERAL.findall(param.annotation):  # enum values: mode="walking"
            terms += tokenize(choice)
    return terms


class ToolIndex:
    """A search index over a set of tools; build once per catalog, query many times.

    ``instructions`` (server → its ``instructions``) show in ``describe("server")``; ``observed`` supplies the
    result shapes seen for tools without an output schema, read at query time (they change between runs).
    """

    def __init__(
        self,
        tools: Iterable[DownstreamTool],
        *,
        instructions: Mapping[str, str | None] | None = None,
        observed: ObservedShapes | None = None,
    ) -> None:
        tools = list(tools)
        self._servers = prepare_catalog(tools, instructions)
        self._observed = observed
        self._resolver = ToolResolver(build_runtime_catalog(tools))
        self._entries: list[tuple[str, PreparedTool]] = []
        self._by_name: dict[str, tuple[str, PreparedTool]] = {}
        for server in self._servers:
            for tool in server.tools:
                entry = (f"{server.reference}.{tool.attr}", tool)
                self._entries.append(entry)
                self._by_name[tool.qualified_name] = entry
        documents = [Counter(_document(tool)) for _, tool in self._entries]
        self._lengths = [sum(doc.values()) for doc in documents]
        self._average = (sum(self._lengths) / len(documents)) if documents else 0.0
        self._postings: dict[str, list[tuple[int, int]]] = {}
        for number, doc in enumerate(documents):
            for term, count in doc.items():
                self._postings.setdefault(term, []).append((number, count))
        total = len(documents)
        self._idf = {
            term: math.log((total - len(postings) + 0.5) / (len(postings) + 0.5) + 1.0)
            for term, postings in self._postings.items()
        }

    def __len__(self) -> int:
        return len(self._entries)

    def scores(self, query: str) -> list[tuple[float, str]]:
        """``(score, "server.tool")`` for every tool that matches, best first (ties by name)."""
        weights = _query_weights(query)
        scores: dict[int, float] = {}
        for term, weight in sorted(weights.items()):
            for number, count in self._postings.get(term, ()):
                norm = _K1 * (1 - _B + _B * self._lengths[number] / self._average)
                gain = weight * self._idf[term] * count * (_K1 + 1) / (count + norm)
                scores[number] = scores.get(number, 0.0) + gain
        exact = query.strip()
        if exact in self._resolver:
            server, tool = self._resolver.resolve(exact)
            for number, (_, prepared) in enumerate(self._entries):
                if prepared.server == server and prepared.name == tool:
                    scores[number] = scores.get(number, 0.0) + 1000.0
        ranked = [(score, self._entries[number][1].qualified_name) for number, score in scores.items()]
        ranked.sort(key=lambda item: (-item[0], item[1]))
        return ranked

    def search(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """The ``limit`` best tools for a query: ``{"name", "call", "summary", "signature"}`` each (plus
        ``observed_result`` for a tool without an output schema once a call returned)."""
        return [self._match(name) for _, name in self.scores(query)[: max(0, limit)]]

    def search_page(self, query: str, limit: int = 5) -> dict[str, Any]:
        """What ``tools.search`` returns: ``{"matches": [...], "total": N}``, plus a ``note`` when it cut the list."""
        ranked = self.scores(query)
        matches = [self._match(name) for _, name in ranked[: max(0, limit)]]
        page: dict[str, Any] = {"matches": matches, "total": len(ranked)}
        if len(ranked) > len(matches):
            page["note"] = f"{len(matches)} of {len(ranked)} matches; raise limit= to see more"
        return page

    def _match(self, name: str) -> dict[str, Any]:
        call, tool = self._by_name[name]
        marks = annotation_marks(tool.tool)
        match: dict[str, Any] = {
            "name": name,
            "call": call,
            "summary": first_sentence(tool.doc, 160) + (f" {marks}" if marks else ""),
            "signature": tool.signature.render(),
        }
        observed = self._observed_result(tool, _SEARCH_EXAMPLE_CHARS)
        if observed is not None:
            match["observed_result"] = observed
        return match

    def _observed_result(self, tool: PreparedTool, example_chars: int) -> dict[str, str] | None:
        if self._observed is None or tool.tool.output_schema is not None:
            return None
        shape = self._observed.get(tool.server, tool.name)
        return shape.as_dict(example_chars) if shape is not None else None

    def describe(self, name: str, schemas: bool = False) -> dict[str, Any]:
        """One tool, compactly: signature, summary, arguments (types, defaults, allowed values), annotations; the
        raw JSON schemas only with ``schemas=True``. A server's name describes the server (its instructions and
        tools). Raises ``UnknownToolError`` with close matches."""
        server_entry = self._server(name)
        if server_entry is not None:
            return self._describe_server(server_entry)
        server, tool_name = self._resolver.resolve(name)
        call, tool = self._by_name[f"{server}.{tool_name}"]
        definition = tool.tool
        hints = (
            definition.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
            if definition.annotations
            else {}
        )
        title = definition.title or hints.pop("title", None)
        hints.pop("title", None)
        described: dict[str, Any] = {"name": tool.qualified_name, "call": call}
        if title:
            described["title"] = title
        described["signature"] = tool.signature.render()
        described["summary"] = inspect.cleandoc(tool.doc)
        described["arguments"] = _arguments(tool)
        fields = result_fields(definition.output_schema) if "dict" in tool.signature.returns else None
        if fields:  # the signature shows `dict`: say which keys the result has
            described["result_fields"] = fields
        if hints:
            described["annotations"] = hints
        observed = self._observed_result(tool, EXAMPLE_CHARS)
        if observed is not None:
            described["observed_result"] = observed
        if schemas:
            described["input_schema"] = definition.input_schema
            described["output_schema"] = definition.output_schema
        return described

    def _server(self, name: str) -> PreparedServer | None:
        if "." in name:
            return None
        return next((s for s in self._servers if name in (s.name, s.ident, s.reference)), None)

    def _describe_server(self, server: PreparedServer) -> dict[str, Any]:
        described: dict[str, Any] = {"server": server.name, "call": server.reference}
        if server.instructions:
            text = server.instructions
            described["instructions"] = (
                text if len(text) <= _INSTRUCTIONS_CHARS else text[: _INSTRUCTIONS_CHARS - 1] + "…"
            )
        described["tools"] = [f"{t.attr}{t.signature.render()}" for t in server.tools[:_SERVER_TOOLS]]
        if len(server.tools) > _SERVER_TOOLS:
            described["note"] = f"{_SERVER_TOOLS} of {len(server.tools)} tools; tools.search() finds the others"
        return described


def _arguments(tool: PreparedTool) -> list[dict[str, Any]]:
    schema = tool.tool.input_schema if isinstance(tool.tool.input_schema, Mapping) else {}
    properties = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
    arguments = []
    for param in tool.signature.parameters:
        argument: dict[str, Any] = {"name": param.name, "type": param.annotation, "required": param.required}
        if param.default is not None:
            argument["default"] = param.default
        prop = properties.get(param.name) if isinstance(properties, Mapping) else None
        choices = prop.get("enum") if isinstance(prop, Mapping) else None
        if isinstance(choices, list) and choices and not param.annotation.startswith("Literal["):
            argument["allowed"] = choices[:_MAX_CHOICES]  # too many for the type to list them
        if param.description:
            argument["description"] = param.description
        arguments.append(argument)
    return arguments

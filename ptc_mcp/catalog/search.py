"""``tools.search()`` and ``tools.describe()``: find tools by topic, read one tool's full definition.

Ranking is Okapi BM25 (k1 = 1.2, b = 0.75) over one bag of words per tool: the tool name (counted three times),
the server name and title (twice), the description, and the argument names and descriptions. Words are split
at ``snake_case``, ``camelCase``, ``kebab-case`` and punctuation boundaries, lowercased, stripped of common
English stop words and lightly stemmed (plural and ``-ing``/``-ed`` endings), the same way for tools and queries.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ptc_mcp.catalog.description import annotation_marks
from ptc_mcp.catalog.model import DownstreamTool
from ptc_mcp.catalog.prepared import PreparedTool, prepare_catalog
from ptc_mcp.catalog.runtime_catalog import ToolResolver, build_runtime_catalog
from ptc_mcp.catalog.signatures import first_sentence

__all__ = ["ToolIndex", "tokenize"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_K1 = 1.2
_B = 0.75
_NAME_WEIGHT = 3
_SERVER_WEIGHT = 2
_WORD = re.compile(r"[A-Z]{2,}s(?![a-z])|[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_STOP_WORDS = _words(
    "a an and are as at be by can do does for from get has have how i in into is it its me my of on or "
    "our show so than that the their them then there these this to was what when where which who will "
    "with you your all any"
)


# Words people use for the verbs tool names use. A query term also matches its synonyms, at half weight.
_SYNONYMS = {
    "remove": ("delete",),
    "erase": ("delete",),
    "drop": ("delete",),
    "find": ("search",),
    "look": ("search", "get"),
    "lookup": ("search", "get"),
    "fetch": ("get",),
    "retrieve": ("get",),
    "read": ("get",),
    "add": ("create",),
    "new": ("create",),
    "make": ("create",),
    "open": ("create",),
    "many": ("count",),
    "number": ("count",),
    "which": ("list",),
    "edit": ("update",),
    "change": ("update",),
    "modify": ("update",),
    "download": ("export",),
}
_SYNONYM_WEIGHT = 0.5


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed") and not word.endswith("eed"):
        return word[:-2]
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


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


def _document(tool: PreparedTool) -> list[str]:
    definition = tool.tool
    terms = tokenize(tool.name) * _NAME_WEIGHT + tokenize(tool.server) * _SERVER_WEIGHT
    title = definition.title or (definition.annotations.title if definition.annotations else None)
    if title:
        terms += tokenize(title) * 2
    terms += tokenize(tool.doc)
    for param in tool.signature.parameters:
        terms += tokenize(param.name) + tokenize(param.description)
    return terms


class ToolIndex:
    """A search index over a set of tools; build once per catalog, query many times."""

    def __init__(self, tools: Iterable[DownstreamTool]) -> None:
        tools = list(tools)
        self._servers = prepare_catalog(tools)
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
        weights: dict[str, float] = {}
        for word in _WORD.findall(query):
            word = word.lower()
            for synonym in _SYNONYMS.get(word, ()):
                weights[synonym] = max(weights.get(synonym, 0.0), _SYNONYM_WEIGHT)
        for term in tokenize(query):
            weights[term] = 1.0
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
        """The ``limit`` best tools for a query: ``{"name", "call", "summary", "signature"}`` each."""
        results = []
        for _, name in self.scores(query)[: max(0, limit)]:
            call, tool = self._by_name[name]
            marks = annotation_marks(tool.tool)
            results.append(
                {
                    "name": name,
                    "call": call,
                    "summary": first_sentence(tool.doc, 160) + (f" {marks}" if marks else ""),
                    "signature": tool.signature.render(),
                }
            )
        return results

    def describe(self, name: str) -> dict[str, Any]:
        """Everything about one tool; raises ``UnknownToolError`` (a ``KeyError``) with close matches."""
        server, tool_name = self._resolver.resolve(name)
        call, tool = self._by_name[f"{server}.{tool_name}"]
        definition = tool.tool
        annotations = (
            definition.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
            if definition.annotations
            else {}
        )
        return {
            "name": tool.qualified_name,
            "server": server,
            "tool": tool_name,
            "call": call,
            "title": definition.title or annotations.get("title"),
            "signature": tool.signature.render(),
            "doc": tool.doc,
            "input_schema": definition.input_schema,
            "output_schema": definition.output_schema,
            "annotations": annotations,
        }

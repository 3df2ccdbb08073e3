"""``ptc-mcp bench catalog``: how big the ``execute_program`` description gets, and how well search finds tools.

For synthetic catalogs of 10, 100 and 1,000 tools (``ptc_mcp.bench.synthetic``) it measures the description
in every presentation, ``auto`` included (with the presentation ``auto`` chose), in tokens of the named
tokenizer; and how often ``tools.search`` ranks the intended tool in the top 3 (and first) for the labelled
natural-language queries of ``SEARCH_QUERIES``, over the 1,000-tool catalog.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ptc_mcp.bench.report import summary, write_section
from ptc_mcp.bench.synthetic import SEARCH_QUERIES, synthetic_tools
from ptc_mcp.catalog.description import build_description, choose_presentation
from ptc_mcp.catalog.search import ToolIndex
from ptc_mcp.catalog.tokens import estimate_tokens, tokenizer_name

__all__ = ["SIZES", "run_catalog_bench", "search_hit_rate", "search_quality"]

SIZES = (10, 100, 1000)
_PRESENTATIONS = ("full", "compact", "namespaces", "auto")
_AUTO_BUDGET = 1500


def search_quality(tool_count: int = 1000, queries: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Top-3 and top-1 hit rates of ``tools.search`` on labelled ``(query, expected "server.tool")`` pairs.

    Queries whose expected tool is not in the catalog of this size are left out. Returns
    ``{"queries", "top3", "top1", "misses": [{"query", "expected", "got"}], "query_ms": {p50, p95, ...}}``
    (``query_ms``: the wall time of each search).
    """
    tools = synthetic_tools(tool_count)
    present = {t.qualified_name for t in tools}
    labelled = [
        (q, expected) for q, expected in (SEARCH_QUERIES if queries is None else queries) if expected in present
    ]
    index = ToolIndex(tools)
    top3 = top1 = 0
    misses = []
    query_ms: list[float] = []
    for query, expected in labelled:
        started = time.perf_counter()
        results = index.search(query, limit=3)
        query_ms.append((time.perf_counter() - started) * 1000)
        names = [r["name"] for r in results]
        top1 += names[:1] == [expected]
        if expected in names:
            top3 += 1
        else:
            misses.append({"query": query, "expected": expected, "got": names})
    count = len(labelled)
    return {
        "queries": count,
        "top3": top3 / count if count else 0.0,
        "top1": top1 / count if count else 0.0,
        "misses": misses,
        "query_ms": summary(query_ms) if query_ms else {},
    }


def search_hit_rate(tool_count: int = 1000, top: int = 3) -> float:
    """The share of ``SEARCH_QUERIES`` whose expected tool is among the first ``top`` (1 or 3) results."""
    quality = search_quality(tool_count)
    return float(quality["top1" if top == 1 else "top3"])


def run_catalog_bench(json_output: bool = False, output: str | Path | None = None) -> dict[str, Any]:
    """Measure, print a table unless ``json_output`` (the CLI prints the JSON), return the report.

    The report: ``{"rows": [{"tools", "presentation", "tokens", "chosen"?}], "search_top3", "search_top1",
    "search_queries", "search_query_ms", "tokenizer"}``; ``chosen`` is set on ``auto`` rows only. With ``output``, the
    ``catalog`` section of that markdown file (docs/benchmarks.md) is rewritten.
    """
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for size in SIZES:
        tools = synthetic_tools(size)
        for presentation in _PRESENTATIONS:
            text = build_description(tools, presentation=presentation, token_budget=_AUTO_BUDGET)  # type: ignore[arg-type]
            row: dict[str, Any] = {"tools": size, "presentation": presentation, "tokens": estimate_tokens(text)}
            if presentation == "auto":
                row["chosen"] = choose_presentation(tools, token_budget=_AUTO_BUDGET)
            rows.append(row)
    quality = search_quality(1000)
    report = {
        "rows": rows,
        "search_top3": round(quality["top3"], 4),
        "search_top1": round(quality["top1"], 4),
        "search_queries": quality["queries"],
        "search_query_ms": quality["query_ms"],
        "tokenizer": tokenizer_name(),
    }
    if output:
        write_section(output, "catalog", markdown(report))
    if not json_output:
        _print_table(report, quality["misses"], time.perf_counter() - started)
    return report


def markdown(report: dict[str, Any]) -> str:
    """The ``catalog`` section of docs/benchmarks.md."""
    lines = [
        "## Tool catalog: description size and search",
        "",
        f"`ptc-mcp bench catalog` on the synthetic catalogs of `ptc_mcp/bench/synthetic.py`; tokens counted "
        f"with {report['tokenizer']}. `auto` keeps to a {_AUTO_BUDGET:,}-token budget.",
        "",
        "| tools | full | compact | namespaces | auto | auto chose |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for size in SIZES:
        cells = {r["presentation"]: r for r in report["rows"] if r["tools"] == size}
        lines.append(
            f"| {size:,} | {cells['full']['tokens']:,} | {cells['compact']['tokens']:,} | "
            f"{cells['namespaces']['tokens']:,} | {cells['auto']['tokens']:,} | {cells['auto']['chosen']} |"
        )
    lines += [
        "",
        f"`tools.search` over 1,000 tools, {report['search_queries']} labelled natural-language queries "
        f"(`SEARCH_QUERIES`): the intended tool is in the top 3 for {report['search_top3']:.1%} and first for "
        f"{report['search_top1']:.1%}. One search takes {report['search_query_ms']['p50']:.2f} ms p50 "
        f"({report['search_query_ms']['p95']:.2f} ms p95).",
    ]
    return "\n".join(lines)


def _print_table(report: dict[str, Any], misses: list[dict[str, Any]], seconds: float) -> None:
    print(f"execute_program description size, in tokens ({report['tokenizer']}):")
    print(f"{'tools':>6}  {'full':>8}  {'compact':>8}  {'namespaces':>10}  {'auto':>8}  auto chose")
    for size in SIZES:
        cells = {r["presentation"]: r for r in report["rows"] if r["tools"] == size}
        print(
            f"{size:>6}  {cells['full']['tokens']:>8}  {cells['compact']['tokens']:>8}  "
            f"{cells['namespaces']['tokens']:>10}  {cells['auto']['tokens']:>8}  {cells['auto']['chosen']}"
        )
    print(
        f"tools.search on 1,000 tools, {report['search_queries']} queries: "
        f"top-3 {report['search_top3']:.1%}, top-1 {report['search_top1']:.1%}; "
        f"{report['search_query_ms']['p50']:.2f} ms p50 per search"
    )
    for miss in misses:
        print(f"  not in the top 3: {miss['query']!r} → {miss['expected']} (got {', '.join(miss['got']) or 'nothing'})")
    print(f"({seconds:.1f} s)")


if __name__ == "__main__":
    as_json = "--json" in sys.argv[1:]
    result = run_catalog_bench(json_output=as_json)
    if as_json:
        import json

        print(json.dumps(result, indent=2))

"""``ptc-mcp bench catalog``: how big the ``execute_program`` description gets, and how well search finds tools.

For synthetic catalogs of 10, 100 and 1,000 tools (``ptc_mcp.catalog.synthetic``) it measures the description
in every presentation, ``auto`` included (with the presentation ``auto`` chose), in tokens of the named
tokenizer; and the top-3 hit rate of ``tools.search`` on ``SEARCH_QUERIES`` over the 1,000-tool catalog.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ptc_mcp.catalog.description import build_description, choose_presentation
from ptc_mcp.catalog.search import ToolIndex
from ptc_mcp.catalog.synthetic import SEARCH_QUERIES, synthetic_tools
from ptc_mcp.catalog.tokens import estimate_tokens, tokenizer_name

__all__ = ["SIZES", "run_catalog_bench", "search_hit_rate"]

SIZES = (10, 100, 1000)
_PRESENTATIONS = ("full", "compact", "namespaces", "auto")


def search_hit_rate(tool_count: int = 1000, top: int = 3) -> float:
    """The share of ``SEARCH_QUERIES`` whose expected tool is among the first ``top`` results."""
    tools = synthetic_tools(tool_count)
    present = {t.qualified_name for t in tools}
    queries = [(q, expected) for q, expected in SEARCH_QUERIES if expected in present]
    index = ToolIndex(tools)
    hits = sum(expected in [r["name"] for r in index.search(query, limit=top)] for query, expected in queries)
    return hits / len(queries) if queries else 0.0


def run_catalog_bench(json_output: bool = False) -> dict[str, Any]:
    """Measure, print a table unless ``json_output`` (the CLI prints the JSON), return the report.

    The report: ``{"rows": [{"tools", "presentation", "tokens", "chosen"?}], "search_top3", "tokenizer"}``;
    ``chosen`` is set on ``auto`` rows only.
    """
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for size in SIZES:
        tools = synthetic_tools(size)
        for presentation in _PRESENTATIONS:
            text = build_description(tools, presentation=presentation)  # type: ignore[arg-type]
            row: dict[str, Any] = {"tools": size, "presentation": presentation, "tokens": estimate_tokens(text)}
            if presentation == "auto":
                row["chosen"] = choose_presentation(tools)
            rows.append(row)
    report = {"rows": rows, "search_top3": round(search_hit_rate(1000, 3), 4), "tokenizer": tokenizer_name()}
    if not json_output:
        _print_table(report, time.perf_counter() - started)
    return report


def _print_table(report: dict[str, Any], seconds: float) -> None:
    print(f"execute_program description size, in tokens ({report['tokenizer']}):")
    print(f"{'tools':>6}  {'full':>8}  {'compact':>8}  {'namespaces':>10}  {'auto':>8}  auto chose")
    for size in SIZES:
        cells = {r["presentation"]: r for r in report["rows"] if r["tools"] == size}
        print(
            f"{size:>6}  {cells['full']['tokens']:>8}  {cells['compact']['tokens']:>8}  "
            f"{cells['namespaces']['tokens']:>10}  {cells['auto']['tokens']:>8}  {cells['auto']['chosen']}"
        )
    print(f"tools.search top-3 hit rate on 1,000 tools: {report['search_top3']:.0%} ({len(SEARCH_QUERIES)} queries)")
    print(f"({seconds:.1f} s)")


if __name__ == "__main__":
    result = run_catalog_bench(json_output="--json" in sys.argv[1:])
    if "--json" in sys.argv[1:]:
        import json

        print(json.dumps(result, indent=2))

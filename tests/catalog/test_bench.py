from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ptc_mcp.bench.catalog import run_catalog_bench
from ptc_mcp.bench.synthetic import SEARCH_QUERIES


def test_catalog_bench_reports_every_size_and_presentation(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_catalog_bench(json_output=True)
    assert capsys.readouterr().out == ""
    json.dumps(report)
    assert {(r["tools"], r["presentation"]) for r in report["rows"]} == {
        (size, p) for size in (10, 100, 1000) for p in ("full", "compact", "namespaces", "auto")
    }
    auto = {r["tools"]: r for r in report["rows"] if r["presentation"] == "auto"}
    assert auto[1000]["tokens"] <= 1500
    assert auto[10]["chosen"] == "full"
    assert report["search_queries"] == len(SEARCH_QUERIES) >= 50
    assert report["search_top3"] >= 0.9
    assert report["search_top1"] <= report["search_top3"]
    # How long a search takes is reported, not asserted (a timed unit test flakes on a loaded machine).
    assert report["search_query_ms"]["n"] == len(SEARCH_QUERIES)
    assert 0 < report["search_query_ms"]["p50"] <= report["search_query_ms"]["p95"]
    assert report["tokenizer"]


def test_catalog_bench_prints_a_table_naming_the_tokenizer(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_catalog_bench(json_output=False)
    out = capsys.readouterr().out
    assert report["tokenizer"] in out
    assert "1000" in out


def test_catalog_bench_rewrites_its_section_of_the_benchmarks_page(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n<!-- latency:start -->\nkept\n<!-- latency:end -->\n", encoding="utf-8")
    run_catalog_bench(json_output=True, output=page)
    run_catalog_bench(json_output=True, output=page)
    text = page.read_text(encoding="utf-8")
    assert "kept" in text
    assert text.count("<!-- catalog:start -->") == 1
    assert "| 1,000 |" in text


@pytest.mark.slow
def test_the_cli_prints_the_report_as_json(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [sys.executable, "-m", "ptc_mcp", "bench", "catalog", "--json", "--output", str(page)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    assert set(report) >= {"rows", "search_top3", "tokenizer"}
    assert {"tools", "presentation", "tokens"} <= set(report["rows"][0])
    assert "auto" in {row["presentation"] for row in report["rows"]}
    assert "<!-- catalog:start -->" in page.read_text(encoding="utf-8")

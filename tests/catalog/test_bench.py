from __future__ import annotations

import json

import pytest

from ptc_mcp.bench.catalog import run_catalog_bench


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
    assert report["search_top3"] >= 0.8
    assert report["tokenizer"]


def test_catalog_bench_prints_a_table_naming_the_tokenizer(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_catalog_bench(json_output=False)
    out = capsys.readouterr().out
    assert report["tokenizer"] in out
    assert "1000" in out

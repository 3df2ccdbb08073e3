"""The ``ptc-mcp`` command as a user runs it: a real subprocess, real exit codes, real output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ptc_mcp.cli import main
from ptc_mcp.examples.expenses_data import over_budget_engineers
from tests.conftest import EXPENSES_STDIO

WAIT_S = 120.0


def ptc_mcp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ptc_mcp", *args],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def write(folder: Path, document: dict[str, Any]) -> str:
    path = folder / "config.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def test_check_prints_the_catalog_and_the_description_and_exits_zero(tmp_path: Path) -> None:
    done = ptc_mcp("check", "--config", write(tmp_path, {"mcpServers": {"expenses": EXPENSES_STDIO}}))
    assert done.returncode == 0, done.stderr
    assert "server expenses: 3 tools" in done.stdout
    assert "  expenses.get_expenses" in done.stdout
    assert "execute_program description:" in done.stdout
    assert "expenses.get_team_members(*, department: str)" in done.stdout
    # Which sandbox and why not the others, and the limits in force with the arithmetic of the sized ones.
    assert "\n  docker: " in done.stdout and "\n  agentcore: " in done.stdout
    assert "\nlimits: " in done.stdout and "programs at once" in done.stdout
    assert "sized from this machine" in done.stdout and "    max_sessions: (" in done.stdout


def test_check_exits_non_zero_when_a_server_fails_and_still_lists_the_others(tmp_path: Path) -> None:
    servers = {"expenses": EXPENSES_STDIO, "broken": {"command": str(tmp_path / "no-such-server")}}
    done = ptc_mcp("check", "--config", write(tmp_path, {"mcpServers": servers}))
    assert done.returncode == 1
    assert "server broken: FAILED" in done.stdout
    assert "  expenses.get_expenses" in done.stdout


@pytest.mark.parametrize(
    ("document", "key"),
    [
        pytest.param({"limits": {"timeout_s": -5}}, "limits.timeout_s", id="bad-value"),
        pytest.param({"limitz": {}}, "limitz", id="unknown-section"),
        pytest.param({"sandbox": {"kind": "vm"}}, "sandbox.kind", id="unknown-kind"),
        pytest.param({"mcpServers": {"x": {"comand": "python"}}}, "mcpServers.x", id="misspelled-server-key"),
        pytest.param({"mcpServers": {"x": {"type": "sse"}}}, "mcpServers.x", id="sse-without-url"),
        pytest.param(
            {"mcpServers": {"x": {"command": "${PTC_TEST_UNSET_VARIABLE}"}}}, "mcpServers.x.command", id="env"
        ),
    ],
)
def test_serve_with_a_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, Any], key: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--config", write(tmp_path, document)])
    captured = capsys.readouterr()
    assert exited.value.code == 2
    assert key in captured.err
    assert captured.out == ""


def test_the_serve_command_exits_2_on_a_bad_config_before_starting_anything(tmp_path: Path) -> None:
    done = ptc_mcp("serve", "--config", write(tmp_path, {"limits": {"max_tool_calls": "many"}}))
    assert done.returncode == 2
    assert "limits.max_tool_calls" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        pytest.param("absent.json", None, "absent.json", id="missing"),
        pytest.param("bad.json", "{no", "line 1", id="bad"),
    ],
)
def test_serve_with_a_missing_or_malformed_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str | None, said: str
) -> None:
    if text is not None:
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--config", str(tmp_path / name)])
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_version_prints_the_version() -> None:
    done = ptc_mcp("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("ptc-mcp ")
    assert "\nsandbox: " in done.stdout and "\n  process: " in done.stdout


@pytest.mark.slow
def test_demo_runs_the_audit_end_to_end_and_exits_zero() -> None:
    done = ptc_mcp("demo")
    assert done.returncode == 0, done.stderr
    for row in over_budget_engineers():
        assert f"({row['id']})" in done.stdout
    assert "answer checked against the ground truth" in done.stdout
    assert done.stdout.startswith("sandbox: ") and "\n  agentcore: " in done.stdout


def test_each_bench_takes_only_its_own_options() -> None:
    refused = ptc_mcp("bench", "latency", "--clients", "3")
    assert refused.returncode == 2
    assert "unrecognized arguments: --clients 3" in refused.stderr
    help_text = ptc_mcp("bench", "soak", "--help").stdout
    assert "--sample-every" in help_text and "--clients" not in help_text and "--model" not in help_text
    missing = ptc_mcp("bench")
    assert missing.returncode == 2 and "latency,catalog,tokens,load,soak" in missing.stderr


def test_bench_defaults_belong_to_each_benchmark() -> None:
    from ptc_mcp.cli import build_parser

    assert build_parser().parse_args(["bench", "latency"]).runs == 300
    assert build_parser().parse_args(["bench", "soak"]).runs == 10_000
    tokens = build_parser().parse_args(["bench", "tokens", "--sequential", "--json", "--output", ""])
    assert (tokens.bench, tokens.model, tokens.sequential, tokens.json, tokens.output) == (
        "tokens",
        "scripted",
        True,
        True,
        "",
    )


def test_check_takes_a_pasted_claude_desktop_file_and_excludes_entries(tmp_path: Path) -> None:
    document = json.loads((Path(__file__).parent / "config_files" / "claude_desktop_config.json").read_text())
    document["mcpServers"]["expenses"]["command"] = sys.executable  # the file says `python`
    done = ptc_mcp("check", "--config", write(tmp_path, document), "--exclude", "ptc", "--exclude", "memory")
    assert done.returncode == 0, done.stderr
    assert "server expenses: 3 tools" in done.stdout
    assert "server ptc" not in done.stdout and "server memory" not in done.stdout
    [line] = [line for line in done.stderr.splitlines() if "ignored client keys" in line]
    assert "globalShortcut" in line and "ptc (--exclude)" in line and "memory (--exclude)" in line


def test_check_reports_a_server_that_fails_to_start_with_its_own_reason(tmp_path: Path) -> None:
    crash = "import sys; sys.stderr.write('expenses-db: DATABASE_URL is not set\\n'); sys.exit(3)"
    servers = {"expenses": EXPENSES_STDIO, "db": {"command": sys.executable, "args": ["-c", crash]}}
    done = ptc_mcp("check", "--config", write(tmp_path, {"mcpServers": servers}))
    assert done.returncode == 1
    [line] = [line for line in done.stdout.splitlines() if line.startswith("server db:")]
    assert "FAILED" in line and "expenses-db: DATABASE_URL is not set" in line
    assert "expenses-db: DATABASE_URL is not set" in done.stderr  # still passed on to ptc-mcp's stderr as it came

"""Client config files pasted as they are: Claude Desktop, Claude Code, Cursor, Cline, Roo, VS Code.

The files in ``tests/config_files`` have the shapes those clients write. Client keys are ignored with one log line;
``"disabled": true`` entries and ``--exclude`` names are not started; ptc-mcp's own sections stay strict.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from ptc_mcp.config import HttpServerConfig, SseServerConfig, StdioServerConfig, load_config, parse_config
from ptc_mcp.errors import ConfigError

FILES = Path(__file__).parent / "config_files"


def load(name: str, caplog: pytest.LogCaptureFixture, **options: Any) -> Any:
    caplog.set_level(logging.INFO, logger="ptc_mcp.config")
    return load_config(FILES / name, environ={"HOME": "/home/me"}, **options)


def config_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "ptc_mcp.config"]


def test_a_claude_desktop_file_is_accepted_and_its_client_keys_named_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = load("claude_desktop_config.json", caplog, exclude=["ptc"])
    assert sorted(config.mcp_servers) == ["expenses", "memory"]
    assert config.mcp_servers["memory"].env == {"MEMORY_FILE_PATH": "/home/me/memory.jsonl"}  # type: ignore[union-attr]
    [line] = config_lines(caplog)
    assert "globalShortcut" in line and "preferences" in line and "isUsingBuiltInNodeForMcp" in line
    assert "ptc (--exclude)" in line


def test_exclude_must_name_a_server_of_the_file(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match=r"--exclude ptc-mcp: no such server.*expenses, memory, ptc"):
        load("claude_desktop_config.json", caplog, exclude=["ptc-mcp"])


def test_a_claude_code_mcp_json_with_typed_entries_is_accepted(caplog: pytest.LogCaptureFixture) -> None:
    config = load("claude_code.mcp.json", caplog)
    assert isinstance(config.mcp_servers["expenses"], StdioServerConfig)
    assert isinstance(config.mcp_servers["docs"], HttpServerConfig)
    assert config.mcp_servers["docs"].headers == {"Authorization": "Bearer none"}
    assert isinstance(config.mcp_servers["events"], SseServerConfig)
    assert config_lines(caplog) == []  # nothing was left out, so nothing is logged


def test_a_cursor_file_reads_its_env_file_and_takes_an_sse_url_as_sse(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# secrets\nexport API_KEY='k-123'\nEXPENSES_MODE=from-file\n", encoding="utf-8")
    document = json.loads((FILES / "cursor_mcp.json").read_text().replace("ENV_FILE_PLACEHOLDER", str(env_file)))
    caplog.set_level(logging.INFO, logger="ptc_mcp.config")
    config = parse_config(document, environ={})
    expenses = config.mcp_servers["expenses"]
    assert isinstance(expenses, StdioServerConfig)
    assert expenses.env == {"API_KEY": "k-123", "EXPENSES_MODE": "demo"}  # the entry's own env wins
    assert isinstance(config.mcp_servers["linear"], SseServerConfig)
    # the same entry with `envFile` before `env`: the same result
    first = {"envFile": str(env_file), **document["mcpServers"]["expenses"]}
    again = parse_config({"mcpServers": {"expenses": first}}, environ={}).mcp_servers["expenses"]
    assert again.env == expenses.env  # type: ignore[union-attr]


def test_a_cline_file_skips_disabled_servers_and_keeps_its_timeouts(caplog: pytest.LogCaptureFixture) -> None:
    config = load("cline_mcp_settings.json", caplog)
    assert sorted(config.mcp_servers) == ["expenses", "remote"]
    assert config.mcp_servers["expenses"].timeout_s == 30
    assert isinstance(config.mcp_servers["remote"], HttpServerConfig)
    [line] = config_lines(caplog)
    assert "mcpServers.expenses.autoApprove" in line and "github (disabled)" in line


def test_a_roo_file_denies_its_disabled_tools(caplog: pytest.LogCaptureFixture) -> None:
    config = load("roo_mcp_settings.json", caplog)
    assert sorted(config.mcp_servers) == ["api", "expenses"]
    assert config.mcp_servers["expenses"].timeout_s == 45
    assert config.tools.deny == ["expenses.get_custom_budget"]
    [line] = config_lines(caplog)
    assert "mcpServers.expenses.alwaysAllow" in line and "mcpServers.expenses.watchPaths" in line
    assert "old (disabled)" in line


def test_a_vscode_file_with_servers_and_inputs_is_accepted(caplog: pytest.LogCaptureFixture) -> None:
    config = load("vscode_mcp.json", caplog)
    assert sorted(config.mcp_servers) == ["expenses", "github", "perplexity"]
    assert config.mcp_servers["expenses"].env == {"HOME_DIR": "/home/me"}  # type: ignore[union-attr]
    [line] = config_lines(caplog)
    assert "inputs" in line and "mcpServers.perplexity.dev" in line


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"mcpServers": {}, "limits": {"timout_s": 5}}, "limits.timout_s"),
        ({"mcpServers": {}, "limts": {"timeout_s": 5}}, "limts"),
        ({"mcpServers": {}, "sandbox": {"kind": "process", "stateles": True}}, "sandbox.stateles"),
        ({"mcpServers": {"x": {"comand": "python"}}}, "comand"),
        ({"mcpServers": {"x": {"command": "python", "timeout_s": -1}}}, "mcpServers.x.stdio.timeout_s"),
    ],
)
def test_typos_in_ptc_mcp_s_own_keys_still_fail_naming_the_key(document: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        parse_config(document, environ={})

"""Which calls need approval (``ApprovalRule``), the config keys, and how arguments are shown."""

from __future__ import annotations

import mcp_types as types
import pytest

from ptc_mcp.approvals import MAX_ARGUMENT_CHARS, ApprovalRule, capped_arguments
from ptc_mcp.config import parse_config
from ptc_mcp.errors import ConfigError


def hints(destructive: bool | None = None, read_only: bool | None = None) -> types.ToolAnnotations:
    return types.ToolAnnotations(destructive_hint=destructive, read_only_hint=read_only)


def test_approve_globs_match_like_allow_globs() -> None:
    rule = ApprovalRule(["github.delete_*", "mail"])
    assert rule.reason("github.delete_repo", None) is not None
    assert rule.reason("mail.send_message", None) is not None  # a pattern without a dot names the server
    assert rule.reason("github.list_repos", None) is None


def test_approve_destructive_follows_the_servers_hints() -> None:
    rule = ApprovalRule(destructive=True)
    assert rule.reason("fs.rm", hints(destructive=True)) is not None
    assert rule.reason("fs.rm", hints(destructive=True, read_only=True)) is None  # read-only wins: nothing to guard
    assert rule.reason("fs.rm", hints(destructive=False)) is None
    assert rule.reason("fs.rm", None) is None  # no claim: only tools.approve can catch it
    assert ApprovalRule().reason("fs.rm", hints(destructive=True)) is None


def test_a_rule_without_patterns_or_destructive_is_inactive() -> None:
    assert not ApprovalRule().active
    assert ApprovalRule(["x.y"]).active and ApprovalRule(destructive=True).active


def test_the_config_accepts_approve_keys_and_names_a_bad_one() -> None:
    config = parse_config(
        {"tools": {"approve": ["a.b"], "approve_destructive": True}, "limits": {"input_timeout_s": 5}}
    )
    assert config.tools.approve == ["a.b"] and config.tools.approve_destructive
    assert config.limits.input_timeout_s == 5
    with pytest.raises(ConfigError, match=r"tools\.approve"):
        parse_config({"tools": {"approve": "a.b"}})
    with pytest.raises(ConfigError, match=r"limits\.input_timeout_s"):
        parse_config({"limits": {"input_timeout_s": 0}})


def test_long_arguments_are_shown_capped_with_a_marker() -> None:
    shown = capped_arguments({"body": "x" * 10_000})
    assert len(shown) < MAX_ARGUMENT_CHARS + 100
    assert shown.endswith("more characters not shown]")
    assert "\x1b" not in capped_arguments({"to": "a@b.c\x1b[2J"})  # no terminal escapes reach the person

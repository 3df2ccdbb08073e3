from __future__ import annotations

from ptc_mcp.catalog.policy import ToolPolicy

from .helpers import downstream


def test_deny_wins_over_allow() -> None:
    policy = ToolPolicy(allow=["*"], deny=["github.delete_*"])
    assert policy.allows("github.get_issue")
    assert not policy.allows("github.delete_repo")


def test_nothing_is_allowed_without_an_allow_pattern() -> None:
    assert not ToolPolicy(allow=[]).allows("a.b")


def test_a_pattern_without_a_dot_names_a_whole_server() -> None:
    policy = ToolPolicy(allow=["expenses", "time.get_*"], deny=[])
    assert policy.allows("expenses.anything")
    assert policy.allows("time.get_current_time")
    assert not policy.allows("time.convert_time")
    assert not policy.allows("expenses2.anything")
    assert not ToolPolicy(deny=["secrets"]).allows("secrets.read")


def test_globs_are_case_sensitive_and_match_dotted_tool_names() -> None:
    policy = ToolPolicy(allow=["files.*"])
    assert policy.allows("files.read.all")
    assert not policy.allows("Files.read")


def test_filter_keeps_allowed_tools_in_order_and_accepts_annotations() -> None:
    tools = [downstream("a", "x"), downstream("b", "y", annotations={"readOnlyHint": True}), downstream("a", "z")]
    policy = ToolPolicy(allow=["a.*", "b.*"], deny=["a.z"])
    assert [t.qualified_name for t in policy.filter(tools)] == ["a.x", "b.y"]
    assert policy.allows("b.y", tools[1].tool.annotations)

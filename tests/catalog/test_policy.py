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


def test_read_only_allows_only_tools_that_declare_read_only_hint() -> None:
    policy = ToolPolicy(read_only=True)
    reader = downstream("fs", "read_file", annotations={"readOnlyHint": True})
    writer = downstream("fs", "write_file", annotations={"readOnlyHint": False, "destructiveHint": True})
    silent = downstream("fs", "stat")
    assert [t.qualified_name for t in policy.filter([reader, writer, silent])] == ["fs.read_file"]
    assert policy.allows("fs.read_file", reader.tool.annotations)
    assert not policy.allows("fs.read_file")  # no annotations: no claim to be read-only
    assert policy.refusal("fs.write_file", writer.tool.annotations) is not None


def test_read_only_does_not_override_deny() -> None:
    policy = ToolPolicy(deny=["fs.read_*"], read_only=True)
    reader = downstream("fs", "read_file", annotations={"readOnlyHint": True})
    assert not policy.allows(reader.qualified_name, reader.tool.annotations)


def test_refusal_says_which_rule_refused() -> None:
    policy = ToolPolicy(allow=["fs"], deny=["fs.rm"], read_only=True)
    assert policy.refusal("fs.rm") == "fs.rm matches a tools.deny pattern"
    assert policy.refusal("web.get") == "web.get matches no tools.allow pattern"
    assert "readOnlyHint" in str(policy.refusal("fs.write"))

from __future__ import annotations

import random

import pytest

from ptc_mcp.bench.synthetic import synthetic_tools
from ptc_mcp.catalog.description import CONVENTION, PRESENTATIONS, build_description, choose_presentation
from ptc_mcp.catalog.model import DownstreamTool
from ptc_mcp.catalog.tokens import estimate_tokens

from .helpers import downstream

CATALOGS = {size: synthetic_tools(size) for size in (10, 100, 1000)}


def _copy(tools: list[DownstreamTool]) -> list[DownstreamTool]:
    # Fresh model objects: equal content, different identity and dict instances.
    return [DownstreamTool(t.server, t.tool.model_copy(deep=True)) for t in tools]


@pytest.mark.parametrize("size", sorted(CATALOGS))
@pytest.mark.parametrize("presentation", PRESENTATIONS)
def test_description_is_byte_identical_for_the_same_tools_in_any_order(size: int, presentation: str) -> None:
    tools = CATALOGS[size]
    failures = {"jira": "exited with status 1", "crm-legacy": "connection refused"}
    first = build_description(tools, presentation=presentation, failures=failures)  # type: ignore[arg-type]
    shuffled = _copy(tools)
    random.Random(size).shuffle(shuffled)
    reordered_failures = dict(reversed(list(failures.items())))
    second = build_description(shuffled, presentation=presentation, failures=reordered_failures)  # type: ignore[arg-type]
    assert first.encode() == second.encode()


def test_auto_stays_within_1500_tokens_at_1000_tools() -> None:
    text = build_description(CATALOGS[1000])
    assert estimate_tokens(text) <= 1500


def test_full_form_of_10_tools_stays_within_4000_tokens_and_auto_picks_it() -> None:
    assert estimate_tokens(build_description(CATALOGS[10], presentation="full")) <= 4000
    assert choose_presentation(CATALOGS[10]) == "full"


@pytest.mark.parametrize("size", sorted(CATALOGS))
@pytest.mark.parametrize("budget", [600, 1500, 4000])
def test_auto_respects_any_reasonable_budget(size: int, budget: int) -> None:
    assert estimate_tokens(build_description(CATALOGS[size], token_budget=budget)) <= budget


def test_auto_prefers_the_most_detailed_presentation_that_fits() -> None:
    assert choose_presentation(CATALOGS[100], token_budget=10_000) == "full"
    assert choose_presentation(CATALOGS[100], token_budget=5_000) == "compact"
    assert choose_presentation(CATALOGS[100], token_budget=1_500) == "namespaces"


def test_full_presentation_shows_signatures_docs_and_annotations() -> None:
    text = build_description(CATALOGS[10], presentation="full")
    assert "expenses.get_expenses(*, employee_id: str, quarter: Literal['Q1', 'Q2', 'Q3', 'Q4']" in text
    assert "    Return the expense line items one employee filed in a quarter" in text
    assert "[read-only]" in text
    assert "servers.time.get_current_time(*, timezone: str)" in text
    assert "file_system.read_file(*, path: str)" in text


def test_compact_presentation_is_one_line_per_tool() -> None:
    text = build_description(CATALOGS[100], presentation="compact")
    tool_lines = [line for line in text.splitlines() if "(" in line and line.split("(")[0].count(".") >= 1]
    assert any(line.startswith("expenses.get_expenses(employee_id, quarter, category?) — ") for line in tool_lines)
    names = {t.qualified_name for t in CATALOGS[100]}
    assert len([line for line in text.splitlines() if line.startswith(("expenses.", "servers.", "github."))]) >= 9
    assert len(names) == 100


def test_namespaces_presentation_lists_servers_counts_and_points_to_search() -> None:
    text = build_description(CATALOGS[1000], presentation="namespaces")
    assert "tools.search(" in text
    assert "- expenses: 4 tools, e.g. get_budget, get_expenses, list_employees, submit_expense_report" in text
    assert "- time (as servers.time): 2 tools" in text


def test_destructive_tools_are_marked() -> None:
    tools = [
        downstream("gh", "delete_repo", annotations={"destructiveHint": True}),
        downstream("gh", "get_repo", annotations={"readOnlyHint": True, "title": "Get repo"}),
        downstream("gh", "plain"),
    ]
    text = build_description(tools, presentation="full")
    assert "gh.delete_repo() -> Any  [destructive]" in text
    assert "gh.get_repo() -> Any  [read-only]" in text
    assert "    Get repo" in text
    assert "gh.plain() -> Any\n" in text


def test_failed_servers_are_listed_as_unavailable_in_every_presentation() -> None:
    failures = {"jira": "command not found: jira-mcp\nmore detail", "zzz": ""}
    for presentation in PRESENTATIONS:
        text = build_description(CATALOGS[10], presentation=presentation, failures=failures)  # type: ignore[arg-type]
        assert "Unavailable servers" in text
        assert "- jira: command not found: jira-mcp more detail" in text
        assert "- zzz\n" in text


def test_no_tools_still_teaches_the_convention() -> None:
    text = build_description([], failures={"only": "boom"})
    assert "call_tool(" in text
    assert "No tools are available." in text
    assert "- only: boom" in text


def test_renamed_tools_name_their_call_tool_form() -> None:
    text = build_description([downstream("a", "get-user"), downstream("a", "get_user")], presentation="full")
    assert "a.get_user_2() -> Any [call_tool name 'a.get-user']" in text
    plain = build_description([downstream("a", "get-user")], presentation="full")
    assert "a.get_user() -> Any\n" in plain and "call_tool name" not in plain  # the identifier works in call_tool


def test_unknown_presentation_is_refused() -> None:
    with pytest.raises(ValueError, match="presentation"):
        build_description(CATALOGS[10], presentation="verbose")  # type: ignore[arg-type]


def test_many_servers_are_trimmed_to_fit_the_budget() -> None:
    tools = [downstream(f"server{i:04d}", "ping") for i in range(2000)]
    text = build_description(tools)
    assert estimate_tokens(text) <= 1500
    assert "more servers" in text


def test_the_fixed_part_fits_in_200_tokens_and_keeps_every_rule() -> None:
    assert estimate_tokens(CONVENTION) <= 200
    for rule in (
        "only its prints and last expression's value come back",
        "async",
        "keyword arguments",
        "top-level await",
        "asyncio.gather",
        "print only what you need",
        "globals unless noted",
        'servers["name"]',
        "call_tool(",
        "tools.search(",
        "tools.describe(",
        "dicts/lists",
        "`Binary` (`.data`, `.mime_type`)",
        "ToolError",
    ):
        assert rule in CONVENTION, rule


def test_a_servers_instructions_show_capped_under_its_heading_and_in_the_namespace_list() -> None:
    tools = [downstream("docs", "get_page", description="Get a page.")]
    text = "# Docs server\n\nUse get_page for pages. " + "More words. " * 40 + "\n\nSecond paragraph."
    full = build_description(tools, presentation="full", instructions={"docs": text})
    note = full.split("## docs\n", 1)[1].splitlines()[0]
    assert note.startswith("Use get_page for pages.") and note.endswith("…") and len(note) == 200
    assert "Second paragraph" not in full and "# Docs server" not in full
    listing = build_description(tools, presentation="namespaces", instructions={"docs": text})
    line = next(line for line in listing.splitlines() if line.startswith("- docs"))
    assert "— Use get_page for pages." in line

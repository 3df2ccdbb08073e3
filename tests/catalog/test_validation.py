from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from ptc_mcp.bench.synthetic import core_tools
from ptc_mcp.catalog.validation import ArgumentError, check_arguments

from .helpers import make_tool

GET_EXPENSES = core_tools()[0].tool
STRICT = make_tool(
    "strict",
    {
        "limit": {"type": "integer"},
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]},
        },
        "employee_id": {"type": "string"},
    },
    schema={
        "type": "object",
        "properties": {
            "limit": {"type": "integer"},
            "employee_id": {"type": "string"},
            "items": {
                "type": "array",
                "items": {"type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]},
            },
        },
        "additionalProperties": False,
    },
)


def _error(tool: Any, arguments: Any, server: str | None = "expenses") -> ArgumentError:
    with pytest.raises(ArgumentError) as caught:
        check_arguments(tool, arguments, server=server)
    assert isinstance(caught.value, TypeError)
    return caught.value


def test_valid_arguments_pass() -> None:
    check_arguments(GET_EXPENSES, {"employee_id": "E7", "quarter": "Q3"})


def test_a_misspelled_argument_is_refused_even_when_the_schema_does_not_forbid_extras() -> None:
    error = _error(GET_EXPENSES, {"employee_id": "E7", "quarter": "Q3", "categroy": "travel"})
    assert (error.argument, error.problem) == ("categroy", "unexpected")
    assert "'category'" in str(error)  # the close match is suggested


def test_extra_arguments_pass_when_the_schema_allows_them_explicitly() -> None:
    tool = make_tool("t", {"n": {"type": "integer"}})
    open_tool = tool.model_copy(update={"input_schema": {**tool.input_schema, "additionalProperties": True}})
    check_arguments(open_tool, {"n": 1, "anything": "goes"})


def test_a_value_outside_the_enum_names_the_argument_and_the_choices() -> None:
    error = _error(GET_EXPENSES, {"employee_id": "E7", "quarter": "Q5"})
    assert (error.argument, error.problem, error.tool) == ("quarter", "choice", "expenses.get_expenses")
    assert "'Q1'" in str(error) and "'Q4'" in str(error) and "'Q5'" in str(error)
    assert str(error).startswith("expenses.get_expenses(): ")


def test_a_missing_required_argument_names_it_and_its_type() -> None:
    error = _error(GET_EXPENSES, {"quarter": "Q1"})
    assert (error.argument, error.problem) == ("employee_id", "missing")
    assert "(str)" in str(error)


def test_a_wrong_type_names_the_expected_type() -> None:
    error = _error(GET_EXPENSES, {"employee_id": 7, "quarter": "Q1"})
    assert (error.argument, error.problem) == ("employee_id", "type")
    assert "str" in str(error) and "int" in str(error)


def test_unexpected_arguments_are_refused_with_a_suggestion() -> None:
    error = _error(STRICT, {"employe_id": "E7"}, server=None)
    assert (error.argument, error.problem, error.tool) == ("employe_id", "unexpected", "strict")
    assert "employee_id" in str(error)  # the close match is suggested


def test_errors_deep_inside_arguments_name_the_path() -> None:
    assert _error(STRICT, {"items": [{"amount": 1}, {"amount": "x"}]}).argument == "items[1].amount"
    missing = _error(STRICT, {"items": [{}]})
    assert (missing.argument, missing.problem) == ("items[0].amount", "missing")


def test_arguments_that_are_not_a_dict_are_refused() -> None:
    assert _error(GET_EXPENSES, ["E7"]).problem == "not_an_object"


def test_other_keyword_failures_are_reported_as_invalid() -> None:
    tool = make_tool("t", {"n": {"type": "integer", "minimum": 1}})
    error = _error(tool, {"n": 0})
    assert (error.argument, error.problem) == ("n", "invalid")


def test_an_invalid_schema_disables_checks_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    tool = make_tool("broken", {"a": {"type": "no-such-type"}})
    with caplog.at_level(logging.WARNING, logger="ptc_mcp.catalog"):
        check_arguments(tool, {"a": 1})
        check_arguments(tool, {"a": "anything"})
    assert len([r for r in caplog.records if "broken" in r.getMessage()]) == 1


def test_an_unresolvable_ref_disables_checks_without_network(caplog: pytest.LogCaptureFixture) -> None:
    tool = make_tool("remote", {"a": {"$ref": "https://example.invalid/schema.json"}})
    with caplog.at_level(logging.WARNING, logger="ptc_mcp.catalog"):
        check_arguments(tool, {"a": 1})
        check_arguments(tool, {"a": 2})
    assert len([r for r in caplog.records if "remote" in r.getMessage()]) == 1


def test_checks_are_cached_and_cost_well_under_a_millisecond() -> None:
    arguments = {"employee_id": "E7", "quarter": "Q3", "category": "travel"}
    check_arguments(GET_EXPENSES, arguments)
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        check_arguments(GET_EXPENSES, arguments, server="expenses")
    per_call = (time.perf_counter() - started) / rounds
    assert per_call < 0.0005, f"{per_call * 1e6:.0f} µs per call"


def test_equal_definitions_from_fresh_objects_are_checked_the_same() -> None:
    copy = GET_EXPENSES.model_copy(deep=True)
    with pytest.raises(ArgumentError):
        check_arguments(copy, {"employee_id": "E7", "quarter": "Q9"})

from __future__ import annotations

import logging
from typing import Any

import pytest

from ptc_mcp.bench.synthetic import core_tools
from ptc_mcp.catalog import validation
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


def test_a_schema_is_compiled_once() -> None:
    # What a check costs a nested call is measured by `ptc-mcp bench latency`; here, that no call compiles again.
    arguments = {"employee_id": "E7", "quarter": "Q3", "category": "travel"}
    check_arguments(GET_EXPENSES, arguments)
    compiled = validation._compiled(GET_EXPENSES, "expenses.get_expenses")
    check_arguments(GET_EXPENSES, arguments, server="expenses")
    assert validation._compiled(GET_EXPENSES, "expenses.get_expenses") is compiled
    assert validation._compiled(GET_EXPENSES.model_copy(deep=True), "expenses.get_expenses") is compiled


def test_equal_definitions_from_fresh_objects_are_checked_the_same() -> None:
    copy = GET_EXPENSES.model_copy(deep=True)
    with pytest.raises(ArgumentError):
        check_arguments(copy, {"employee_id": "E7", "quarter": "Q9"})


PLAIN_SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"user_id": {"type": "string", "title": "User Id"}}, "required": ["user_id"]},
    {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "x": {"type": "number", "description": "a number"},
            "flag": {"type": "boolean", "default": False},
            "tags": {"type": "array"},
            "opts": {"type": ["object", "null"]},
            "anything": {},
        },
        "additionalProperties": True,
    },
    {"type": "object", "properties": {"q": {"type": "string", "enum": ["a"]}}},  # not plain: jsonschema decides
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object", "properties": {"k": {"type": "integer"}}},
]
ARGUMENTS: list[dict[str, Any]] = [
    {},
    {"user_id": "E7"},
    {"user_id": 7},
    {"user_id": None},
    {"user_id": "E7", "extra": 1},
    {"n": 1, "x": 1.5, "flag": True, "tags": [1], "opts": None, "anything": object()},
    {"n": True},
    {"n": 1.0},
    {"n": 1.5},
    {"x": True},
    {"x": 2},
    {"flag": 0},
    {"tags": (1,)},
    {"opts": {"a": 1}},
    {"opts": "no"},
    {"q": "a"},
    {"q": "b"},
    {"k": 3},
    {"k": "3"},
]


@pytest.mark.parametrize("schema", PLAIN_SCHEMAS)
def test_the_quick_check_of_plain_schemas_agrees_with_jsonschema(schema: dict[str, Any]) -> None:
    """Plain schemas skip jsonschema for valid calls: the shortcut must refuse nothing jsonschema accepts and,
    above all, accept nothing it refuses (a refused call still gets jsonschema's verdict and message)."""
    import jsonschema

    tool = make_tool("plain", {}, schema=schema)
    strict = {**schema, "additionalProperties": schema.get("additionalProperties", False)}
    validator = jsonschema.validators.validator_for(strict, default=jsonschema.Draft202012Validator)(strict)
    for arguments in ARGUMENTS:
        try:
            check_arguments(tool, arguments)
            accepted = True
        except ArgumentError:
            accepted = False
        assert accepted == validator.is_valid(arguments), (schema, arguments)


def test_plain_schemas_are_answered_without_jsonschema() -> None:
    # The quick check answers for valid arguments of a plain schema (jsonschema takes ~30 µs here); the others get
    # jsonschema's verdict.
    quick = [validation._compiled(make_tool("plain", {}, schema=schema), "plain").quick for schema in PLAIN_SCHEMAS]
    assert [check is not None for check in quick] == [True, True, False, True]  # the third has an enum
    assert quick[0] is not None and quick[0]({"user_id": "E7"})

"""The one rule for results: values (``tool_value``) and return types (``return_type``) agree."""

from __future__ import annotations

from typing import Any

import mcp_types as types

from ptc_mcp.catalog.observed import ObservedShapes, value_skeleton
from ptc_mcp.catalog.signatures import return_type
from ptc_mcp.catalog.validation import ArgumentError, check_arguments
from ptc_mcp.catalog.values import BINARY_MARKER, tool_value

from .helpers import downstream, make_tool
from .type_fit import fits

ENVELOPE: dict[str, Any] = {
    "type": "object",
    "properties": {"result": {"type": "array", "items": {"$ref": "#/$defs/Row"}}},
    "required": ["result"],
    "$defs": {"Row": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}},
}
MIRRORED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "content": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"type": {"enum": ["image", "audio"]}, "data": {"type": "string"}, "mimeType": {}},
            },
        }
    },
}
IMAGE = types.ImageContent(type="image", data="iVBO", mime_type="image/png")


def test_the_envelope_is_unwrapped_in_the_return_type_and_in_the_value() -> None:
    assert return_type(ENVELOPE) == "list[{id: str}]"
    result = types.CallToolResult(content=[], structured_content={"result": [{"id": "a"}]})
    value = tool_value(result, ENVELOPE)
    assert value == [{"id": "a"}]
    assert fits(value, return_type(ENVELOPE))


def test_an_object_with_one_optional_result_key_is_not_an_envelope() -> None:
    schema = {"type": "object", "properties": {"result": {"type": "string"}}}
    assert return_type(schema) == "{result?: str}"
    assert tool_value(types.CallToolResult(content=[], structured_content={"result": "x"}), schema) == {"result": "x"}


def test_binary_blocks_win_over_structured_content() -> None:
    result = types.CallToolResult(content=[IMAGE], structured_content={"content": [{"type": "image", "data": "iVBO"}]})
    value = tool_value(result, MIRRORED)
    assert value == {BINARY_MARKER: {"mime_type": "image/png", "data": "iVBO"}}
    assert return_type(MIRRORED) == "Binary | list[Binary]"
    assert fits(value, return_type(MIRRORED))
    no_schema = tool_value(types.CallToolResult(content=[IMAGE, IMAGE], structured_content={"n": 2}))
    assert isinstance(no_schema, list) and all(BINARY_MARKER in item for item in no_schema)


def test_the_observed_skeleton_uses_the_signature_notation() -> None:
    value = [{"id": 1, "tags": ["a"], "owner": {"name": "x", "address": {"city": "y"}}}, {"id": 2, "tags": []}]
    skeleton = value_skeleton(value)
    assert skeleton.startswith("list[{id: int, tags: list[str], owner: {name: str, address: dict}}")
    assert fits(value[0], skeleton.removeprefix("list[").split(" | ")[0])
    assert value_skeleton({BINARY_MARKER: {"data": ""}}) == "Binary"


def test_observed_shapes_last_one_connection_and_one_tool_definition() -> None:
    shapes = ObservedShapes()
    tool = downstream("s", "t")
    shapes.record(tool, 1, {"a": 1})
    assert shapes.get("s", "t") is not None and shapes.get("s", "t").type == "{a: int}"  # type: ignore[union-attr]
    shapes.keep_connections({"s": 1})
    assert shapes.get("s", "t") is not None
    shapes.keep_tools([downstream("s", "t", description="changed")])
    assert shapes.get("s", "t") is None
    shapes.record(tool, 1, {"a": 1})
    shapes.keep_connections({"s": 2})
    assert shapes.get("s", "t") is None
    shapes.record(downstream("s", "u", output={"type": "object"}), 2, {"a": 1})
    assert shapes.get("s", "u") is None  # a declared output schema says it already


def test_a_misspelled_required_argument_gets_a_did_you_mean() -> None:
    tool = make_tool("f", {"employee_id": {"type": "string"}, "quarter": {"type": "string"}}, ["employee_id"])
    try:
        check_arguments(tool, {"employe_id": "E1"}, server="s")
    except ArgumentError as exc:
        assert exc.problem == "missing" and exc.argument == "employee_id"
        assert "got unexpected argument 'employe_id': did you mean 'employee_id'?" in str(exc)
    else:
        raise AssertionError("the call was not refused")

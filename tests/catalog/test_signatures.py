from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ptc_mcp.catalog.signatures import first_sentence, schema_type, tool_doc, tool_signature

from .helpers import make_tool


def render(properties: dict[str, Any], required: list[str] | None = None, **kwargs: Any) -> str:
    return tool_signature(make_tool("t", properties, required, **kwargs)).render()


def test_parameters_are_keyword_only_required_first_with_enum_literals_and_defaults() -> None:
    text = render(
        {
            "quarter": {"type": "string", "enum": ["Q1", "Q2"], "default": "Q1"},
            "employee_id": {"type": "string"},
        },
        ["employee_id"],
    )
    assert text == "(*, employee_id: str, quarter: Literal['Q1', 'Q2'] = 'Q1') -> Any"


def test_optional_parameter_without_default_is_marked_as_omittable() -> None:
    assert render({"limit": {"type": "integer"}}) == "(*, limit: int = ...) -> Any"


def test_json_types_map_to_python_types() -> None:
    cases = {
        "string": "str",
        "integer": "int",
        "number": "float",
        "boolean": "bool",
        "null": "None",
        "array": "list",
        "object": "dict",
    }
    for json_type, python_type in cases.items():
        assert schema_type({"type": json_type}) == python_type


def test_arrays_unions_and_nullable_types() -> None:
    assert schema_type({"type": "array", "items": {"type": "string"}}) == "list[str]"
    assert schema_type({"type": ["string", "null"]}) == "str | None"
    assert schema_type({"anyOf": [{"type": "null"}, {"type": "integer"}]}) == "int | None"
    assert schema_type({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}]}) == (
        "str | list[int]"
    )
    assert schema_type({"type": "string", "nullable": True}) == "str | None"
    assert schema_type({"const": "fixed"}) == "Literal['fixed']"
    assert schema_type({"type": "object", "additionalProperties": {"type": "integer"}}) == "dict[str, int]"
    assert schema_type({}) == "Any"


def test_small_nested_objects_are_shown_inline_and_deep_ones_as_dict() -> None:
    nested = {
        "type": "object",
        "properties": {
            "start": {"type": "string"},
            "end": {"type": "string"},
            "deeper": {"type": "object", "properties": {"x": {"type": "object", "properties": {"y": {}}}}},
        },
        "required": ["start"],
    }
    assert schema_type(nested) == "{start: str, end?: str, deeper?: {x?: dict}}"
    assert schema_type(nested, level=1) == "{start: str, end?: str, deeper?: dict}"


def test_refs_into_defs_are_resolved_and_recursion_is_bounded() -> None:
    schema = {
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/Node"}, "when": {"$ref": "#/definitions/Date"}},
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
        "definitions": {"Date": {"type": "string", "format": "date"}},
    }
    text = tool_signature(make_tool("t", schema=schema)).render()
    assert "node: {child?: dict} = ..." in text
    assert "when: str = ..." in text


def test_return_type_comes_from_output_schema() -> None:
    output = {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": {"type": "object"}}, "total": {"type": "number"}},
        "required": ["rows", "total"],
    }
    assert render({}, output=output) == "() -> {rows: list[dict], total: float}"
    assert render({}) == "() -> Any"


def test_property_names_that_are_not_identifiers_are_shown_quoted_in_a_kwargs_note() -> None:
    text = render(
        {"first-name": {"type": "string"}, "from": {"type": "string"}, "ok": {"type": "integer"}}, ["first-name"]
    )
    assert text == "(*, ok: int = ..., **{'first-name': str, 'from'?: str}) -> Any"
    short = tool_signature(make_tool("t", {"first-name": {}, "ok": {}}, ["ok"])).render_short()
    assert short == "(ok, 'first-name'?)"


def test_docstring_is_the_description_or_the_title() -> None:
    assert tool_doc(make_tool("t", description="  Does things.  ")) == "Does things."
    assert tool_doc(make_tool("t", annotations={"title": "Thing doer"})) == "Thing doer"
    assert tool_doc(make_tool("t")) == ""


def test_first_sentence_stops_at_the_first_full_stop_and_is_bounded() -> None:
    assert first_sentence("Get the user. Then more.") == "Get the user."
    assert first_sentence("Use e.g. this. Next") == "Use e.g. this."
    assert first_sentence("\n\n  First line\nsecond line") == "First line"
    assert len(first_sentence("x" * 500, 50)) == 50


HOSTILE_SCHEMAS: list[Any] = [
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"$ref": "#/$defs/A"}}},
    {"type": "object", "properties": {"a": {"$ref": "http://example.invalid/schema.json"}}},
    {"type": "object", "properties": {"a": {"$ref": "#/nowhere/at/all"}}},
    {"type": "object", "properties": {"a": {"type": 42}}},
    {"type": "object", "properties": {"a": {"enum": [{"x": 1}, [1, 2]]}}},
    {"type": "object", "properties": {"a": {"enum": list(range(5000))}}},
    {"type": "object", "properties": {"a": {"anyOf": "not a list"}}},
    {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}] * 500}}},
    {"type": "object", "properties": {"a": {"allOf": [{"$ref": "#/$defs/B"}, 5]}}, "$defs": {"B": {"type": "string"}}},
    {"type": "object", "properties": {"a": {"type": ["string", 7, None]}}},
    {"type": "object", "properties": {"a": {"items": [1, 2, 3]}}},
    {"type": "object", "properties": {"a": {"default": float("nan"), "type": "number"}}},
    {"type": "object", "properties": {"": {}, " ": {}, "x\ny": {}, "'": {}}},
    {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(300)}},
    {"type": "object", "properties": "nope", "required": "also nope"},
    {"type": "object", "properties": {"a": True, "b": False, "c": None}},
    {"type": "object", "allOf": [{"properties": {"x": {"type": "string"}}, "required": ["x"]}]},
    {"$ref": "#/$defs/Root", "$defs": {"Root": {"type": "object", "properties": {"r": {"type": "integer"}}}}},
]


def _deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"n": schema}}
    return schema


def test_hostile_schemas_never_crash_and_render_bounded_signatures() -> None:
    for schema in [*HOSTILE_SCHEMAS, _deep(2000)]:
        signature = tool_signature(make_tool("t", schema=schema))
        text = signature.render()
        assert text.startswith("(")
        assert len(text) < 12_000


def test_big_schemas_are_summarized() -> None:
    many = tool_signature(make_tool("t", schema=HOSTILE_SCHEMAS[13]))
    assert many.omitted == 260
    assert "(260 more)" in many.render()
    assert schema_type(HOSTILE_SCHEMAS[5]["properties"]["a"]) in ("int", "Any")


def test_all_of_parts_are_merged_into_one_parameter_list() -> None:
    assert tool_signature(make_tool("t", schema=HOSTILE_SCHEMAS[16])).render() == "(*, x: str) -> Any"
    assert tool_signature(make_tool("t", schema=HOSTILE_SCHEMAS[17])).render() == "(*, r: int = ...) -> Any"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=30,
)
SCHEMA_KEYWORDS = "type properties items enum anyOf oneOf allOf $ref required default const additionalProperties"
schema_keys = st.sampled_from([*SCHEMA_KEYWORDS.split(), "nullable", "$defs", "prefixItems"])
schemas = st.recursive(
    st.dictionaries(schema_keys, json_values, max_size=4),
    lambda children: (
        st.dictionaries(schema_keys, children | json_values, max_size=5)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=100, deadline=None)
@given(properties=st.dictionaries(st.text(max_size=8), schemas, max_size=6), output=schemas)
def test_arbitrary_schemas_never_crash(properties: dict[str, Any], output: dict[str, Any]) -> None:
    tool = make_tool("t", schema={"type": "object", "properties": properties}, output=output)
    signature = tool_signature(tool)
    json.dumps(signature.render())
    signature.render_short()

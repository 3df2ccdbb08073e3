from __future__ import annotations

import json
import random

import pytest

from ptc_mcp.bench.synthetic import synthetic_tools
from ptc_mcp.catalog.model import DownstreamTool, UnknownToolError
from ptc_mcp.catalog.runtime_catalog import (
    ToolResolver,
    build_runtime_catalog,
    catalog_version,
    resolve,
    split_qualified_name,
)

from .helpers import downstream


def test_runtime_catalog_has_the_protocol_shape() -> None:
    catalog = build_runtime_catalog(synthetic_tools(10))
    assert set(catalog) == {"servers"}
    for server in catalog["servers"]:
        assert set(server) == {"name", "global", "attr", "tools"}
        for tool in server["tools"]:
            assert set(tool) == {"name", "attr", "signature", "doc"}
            assert tool["attr"].isidentifier()
            assert tool["signature"].startswith("(")
    assert json.loads(json.dumps(catalog)) == catalog
    expenses = next(s for s in catalog["servers"] if s["name"] == "expenses")
    assert expenses["global"] == "expenses"
    assert expenses["tools"][0]["name"] == "get_expenses"
    assert expenses["tools"][0]["signature"].startswith("(*, employee_id: str, quarter: Literal[")


def test_catalog_and_version_do_not_depend_on_input_order() -> None:
    tools = synthetic_tools(100)
    shuffled = list(tools)
    random.Random(7).shuffle(shuffled)
    first, second = build_runtime_catalog(tools), build_runtime_catalog(shuffled)
    assert first == second
    assert catalog_version(first) == catalog_version(second)
    assert len(catalog_version(first)) == 64


def test_version_changes_when_a_tool_changes() -> None:
    before = catalog_version(build_runtime_catalog([downstream("a", "t", description="one")]))
    after = catalog_version(build_runtime_catalog([downstream("a", "t", description="two")]))
    assert before != after


def test_a_tool_listed_twice_by_one_server_appears_once() -> None:
    tools = [downstream("a", "t", description="second"), downstream("a", "t", description="first")]
    catalog = build_runtime_catalog(tools)
    assert [t["name"] for t in catalog["servers"][0]["tools"]] == ["t"]
    assert catalog == build_runtime_catalog(list(reversed(tools)))


def test_qualified_names_split_at_the_first_dot() -> None:
    assert split_qualified_name("files.read.all") == ("files", "read.all")
    for bad in ("nodot", ".tool", "server."):
        with pytest.raises(ValueError):
            split_qualified_name(bad)


def test_resolve_maps_original_and_identifier_names_to_server_and_tool() -> None:
    tools = [downstream("file-system", "read-file"), downstream("time", "now"), downstream("files", "read.all")]
    catalog = build_runtime_catalog(tools)
    resolver = ToolResolver(catalog)
    assert resolver.resolve("file-system.read-file") == ("file-system", "read-file")
    assert resolver.resolve("file_system.read_file") == ("file-system", "read-file")
    assert resolver.resolve("files.read.all") == ("files", "read.all")
    assert resolve(catalog, "time.now") == ("time", "now")


def test_unknown_names_raise_a_lookup_error_with_close_matches() -> None:
    catalog = build_runtime_catalog(synthetic_tools(30))
    with pytest.raises(LookupError) as caught:
        resolve(catalog, "expenses.get_expense")
    error = caught.value
    assert isinstance(error, UnknownToolError)
    assert error.suggestions[0] == "expenses.get_expenses"
    assert "expenses.get_expenses" in str(error)
    with pytest.raises(UnknownToolError) as wrong_server:
        resolve(catalog, "expense.get_budget")
    assert "expenses.get_budget" in wrong_server.value.suggestions


def test_downstream_tool_names_itself() -> None:
    tool = downstream("a", "b.c")
    assert isinstance(tool, DownstreamTool)
    assert tool.qualified_name == "a.b.c"

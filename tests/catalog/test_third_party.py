"""The catalog built from the live tool lists of real third-party MCP servers, and used by real programs.

``mcp-server-time`` (PyPI) runs over stdio through ``DownstreamPool``; ``@modelcontextprotocol/server-memory``
and ``@modelcontextprotocol/server-filesystem`` (npm) run from their global install with
``npm_config_offline=true``, so no test downloads anything. Without them the ``node`` tests are skipped.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from ptc_mcp.app import open_app
from ptc_mcp.bench.synthetic import synthetic_tools
from ptc_mcp.catalog.description import PRESENTATIONS, build_description, choose_presentation
from ptc_mcp.catalog.model import DownstreamTool
from ptc_mcp.catalog.prepared import prepare_catalog
from ptc_mcp.catalog.runtime_catalog import build_runtime_catalog
from ptc_mcp.catalog.search import ToolIndex
from ptc_mcp.catalog.validation import ArgumentError, check_arguments
from ptc_mcp.config import StdioServerConfig, parse_config
from ptc_mcp.downstream import DownstreamPool
from ptc_mcp.executor import ExecuteRequest
from ptc_mcp.results import RunResult

TIME_SERVER: dict[str, Any] = {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}

needs_time_server = pytest.mark.skipif(
    importlib.util.find_spec("mcp_server_time") is None, reason="mcp-server-time is not installed (pip install)"
)


def _npm_servers_missing() -> str | None:
    if shutil.which("node") is None:
        return "Node.js is not on PATH"
    for package in ("server-memory", "server-filesystem"):
        if shutil.which(f"mcp-{package}") is None:
            return f"run `npm install -g @modelcontextprotocol/{package}` (tests never download packages)"
    return None


def _npm_servers(folder: Path) -> dict[str, StdioServerConfig]:
    (folder / "files").mkdir(exist_ok=True)
    offline = {"npm_config_offline": "true"}
    return {
        "memory": StdioServerConfig(
            command="mcp-server-memory", env={**offline, "MEMORY_FILE_PATH": str(folder / "memory.jsonl")}
        ),
        "filesystem": StdioServerConfig(command="mcp-server-filesystem", args=[str(folder / "files")], env=offline),
    }


async def _list_tools(servers: dict[str, StdioServerConfig]) -> list[DownstreamTool]:
    with anyio.fail_after(60):
        async with DownstreamPool(servers) as pool:
            assert pool.failures == {}
            return pool.tools()


def _twice(servers: dict[str, StdioServerConfig]) -> tuple[list[DownstreamTool], list[DownstreamTool]]:
    """The tool lists of two separate launches of the same servers."""
    return anyio.run(_list_tools, servers), anyio.run(_list_tools, servers)


@pytest.fixture(scope="module")
def time_tools() -> tuple[list[DownstreamTool], list[DownstreamTool]]:
    if importlib.util.find_spec("mcp_server_time") is None:
        pytest.skip("mcp-server-time is not installed")
    return _twice({"time": StdioServerConfig.model_validate(TIME_SERVER)})


@pytest.fixture(scope="module")
def npm_tools(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[DownstreamTool], list[DownstreamTool]]:
    missing = _npm_servers_missing()
    if missing is not None:
        pytest.skip(missing)
    return _twice(_npm_servers(tmp_path_factory.mktemp("npm-servers")))


@pytest.fixture(scope="module")
def live_tools(
    time_tools: tuple[list[DownstreamTool], list[DownstreamTool]],
    npm_tools: tuple[list[DownstreamTool], list[DownstreamTool]],
) -> list[DownstreamTool]:
    return time_tools[0] + npm_tools[0]


@pytest.fixture(scope="module")
def crowded_index(live_tools: list[DownstreamTool]) -> ToolIndex:
    """The live tools among the synthetic 1,000 (without the synthetic servers that do the same jobs)."""
    servers = {t.server for t in live_tools} | {"file-system"}
    return ToolIndex(live_tools + [t for t in synthetic_tools(1000) if t.server not in servers])


def _tool(tools: list[DownstreamTool], name: str) -> DownstreamTool:
    return next(t for t in tools if t.qualified_name == name)


# --- mcp-server-time ---------------------------------------------------------------------------------------------


@needs_time_server
def test_the_time_servers_description_is_byte_identical_across_launches(
    time_tools: tuple[list[DownstreamTool], list[DownstreamTool]],
) -> None:
    first, second = time_tools
    for presentation in PRESENTATIONS:
        text = build_description(first, presentation=presentation)
        assert text == build_description(list(reversed(second)), presentation=presentation)
    assert choose_presentation(first) == "full"


@needs_time_server
def test_the_time_server_is_reached_through_servers_because_time_is_a_module(
    time_tools: tuple[list[DownstreamTool], list[DownstreamTool]],
) -> None:
    tools = time_tools[0]
    (server,) = build_runtime_catalog(tools)["servers"]
    assert (server["name"], server["attr"], server["global"]) == ("time", "time", None)
    description = build_description(tools, presentation="full")
    assert "servers.time.convert_time(*, source_timezone: str, time: str, target_timezone: str)" in description
    assert "[read-only]" in description


@needs_time_server
def test_the_time_servers_tools_render_as_signatures_and_are_searchable(
    time_tools: tuple[list[DownstreamTool], list[DownstreamTool]],
) -> None:
    tools = time_tools[0]
    (server,) = prepare_catalog(tools)
    signatures = {tool.name: tool.signature.render() for tool in server.tools}
    assert signatures["get_current_time"].startswith("(*, timezone: str) -> ")
    index = ToolIndex(tools + [t for t in synthetic_tools(1000) if t.server != "time"])
    assert index.search("convert a time between timezones", limit=1)[0]["name"] == "time.convert_time"
    assert "time.get_current_time" in [r["name"] for r in index.search("what time is it in Tokyo", limit=3)]


@needs_time_server
def test_a_wrong_argument_to_the_time_server_names_the_argument(
    time_tools: tuple[list[DownstreamTool], list[DownstreamTool]],
) -> None:
    convert = _tool(time_tools[0], "time.convert_time")
    with pytest.raises(ArgumentError) as caught:
        check_arguments(convert.tool, {"source_timezone": "UTC", "time": 1530, "target_timezone": "UTC"}, server="time")
    assert (caught.value.argument, caught.value.problem) == ("time", "type")
    with pytest.raises(ArgumentError) as caught:
        check_arguments(convert.tool, {"source_timezone": "UTC", "time": "15:30"}, server="time")
    assert (caught.value.argument, caught.value.problem) == ("target_timezone", "missing")
    check_arguments(convert.tool, {"source_timezone": "UTC", "time": "15:30", "target_timezone": "Asia/Tokyo"})


# --- the npm servers -------------------------------------------------------------------------------------------


@pytest.mark.node
def test_the_npm_servers_descriptions_are_byte_identical_across_launches(
    npm_tools: tuple[list[DownstreamTool], list[DownstreamTool]],
) -> None:
    first, second = npm_tools
    assert {t.server for t in first} == {"memory", "filesystem"}
    for presentation in PRESENTATIONS:
        assert build_description(first, presentation=presentation) == build_description(
            list(reversed(second)), presentation=presentation
        )


@pytest.mark.node
def test_every_live_tool_gets_a_signature_with_its_required_arguments(live_tools: list[DownstreamTool]) -> None:
    by_name = {t.qualified_name: t for t in live_tools}
    for server in prepare_catalog(live_tools):
        for tool in server.tools:
            rendered = tool.signature.render()
            required = by_name[tool.qualified_name].tool.input_schema.get("required", [])
            assert all(f"{name}: " in rendered for name in required), (tool.qualified_name, rendered)
    server_signatures = {t.qualified_name: t.signature.render() for s in prepare_catalog(live_tools) for t in s.tools}
    assert server_signatures["memory.create_entities"].startswith(
        "(*, entities: list[{name: str, entityType: str, observations: list[str]}]) -> "
    )
    assert "sortBy: Literal['name', 'size'] = 'name'" in server_signatures["filesystem.list_directory_with_sizes"]


@pytest.mark.node
def test_live_annotations_and_titles_reach_the_description_and_describe(live_tools: list[DownstreamTool]) -> None:
    description = build_description(live_tools, presentation="full")
    assert "memory.delete_entities(*, entityNames: list[str])" in description
    line = next(line for line in description.splitlines() if line.startswith("filesystem.write_file("))
    assert line.endswith("[destructive]")
    assert "Read Text File: " in description  # the tool's title
    described = ToolIndex(live_tools).describe("filesystem.write_file")
    assert described["title"] == "Write File"
    assert described["annotations"]["destructiveHint"] is True


@pytest.mark.node
def test_the_runtime_catalog_of_the_live_servers(live_tools: list[DownstreamTool]) -> None:
    catalog = build_runtime_catalog(live_tools)
    servers = {s["name"]: s for s in catalog["servers"]}
    assert servers["memory"]["global"] == "memory"
    assert servers["filesystem"]["global"] == "filesystem"
    assert servers["time"]["global"] is None
    assert sum(len(s["tools"]) for s in catalog["servers"]) == len(live_tools)


@pytest.mark.node
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("convert a time between timezones", "time.convert_time"),
        ("delete an entity from the knowledge graph", "memory.delete_entities"),
        ("search the knowledge graph for nodes about Alice", "memory.search_nodes"),
        ("list the files in a directory", "filesystem.list_directory"),
        ("rename a file", "filesystem.move_file"),
        ("overwrite a file with new content", "filesystem.write_file"),
    ],
)
def test_search_finds_live_tools_among_a_thousand_others(crowded_index: ToolIndex, query: str, expected: str) -> None:
    assert expected in [r["name"] for r in crowded_index.search(query, limit=3)]


@pytest.mark.node
def test_a_wrong_nested_argument_to_a_live_tool_names_its_path(live_tools: list[DownstreamTool]) -> None:
    create = _tool(live_tools, "memory.create_entities")
    with pytest.raises(ArgumentError) as caught:
        check_arguments(create.tool, {"entities": [{"name": "ptc", "observations": []}]}, server="memory")
    assert caught.value.argument == "entities[0].entityType"
    assert caught.value.problem == "missing"


# --- programs through the real executor ---------------------------------------------------------------------------

WRONG_ARGUMENT_THEN_RIGHT = """
import time
started = time.monotonic()
try:
    await servers["time"].convert_time(source_timezone="Europe/Paris", time=1530, target_timezone="Asia/Tokyo")
except TypeError as exc:
    print("TypeError:", exc)
converted = await servers["time"].convert_time(
    source_timezone="Europe/Paris", time="15:30", target_timezone="Asia/Tokyo"
)
print(converted["target"]["timezone"], time.monotonic() >= started, servers.time is servers["time"])
"""


@pytest.fixture
def run_program() -> Iterator[Any]:
    """``await run_program(code, servers)``: one ``execute_program`` run through ``open_app``."""

    async def run(code: str, servers: dict[str, Any], **sections: Any) -> RunResult:
        document = {"mcpServers": servers, "sandbox": {"kind": "process"}, "limits": {"timeout_s": 30}, **sections}
        config = parse_config(document, environ={})
        with anyio.fail_after(90):
            async with open_app(config, allow_unisolated=True) as app:
                assert app.pool.failures == {}
                return await app.executor.execute(ExecuteRequest(code=code))

    yield run


@needs_time_server
@pytest.mark.anyio
async def test_a_program_gets_a_type_error_naming_the_argument_and_fixes_its_call(run_program: Any) -> None:
    result = await run_program(WRONG_ARGUMENT_THEN_RIGHT, {"time": TIME_SERVER})
    assert result.status == "ok", result.error
    first, second = result.stdout.splitlines()
    assert first.startswith("TypeError: time.convert_time(): argument 'time' must be str")
    assert second == "Asia/Tokyo True True"
    assert result.tool_calls == 1  # the call refused on the host never reached the server: not a tool call


@needs_time_server
@pytest.mark.anyio
async def test_an_uncaught_argument_error_is_a_type_error_result(run_program: Any) -> None:
    result = await run_program('import time\nawait servers["time"].get_current_time()', {"time": TIME_SERVER})
    assert result.status == "error"
    assert result.error is not None
    assert result.error.type == "program_error"
    assert result.error.exc_type == "TypeError"
    assert "'timezone'" in result.error.message


@pytest.mark.node
@pytest.mark.skipif(_npm_servers_missing() is not None, reason=str(_npm_servers_missing()))
@pytest.mark.anyio
async def test_a_program_calls_npm_servers_and_a_wrong_nested_argument_is_a_type_error(
    run_program: Any, tmp_path: Path
) -> None:
    servers = {name: config.model_dump(exclude_none=True) for name, config in _npm_servers(tmp_path).items()}
    code = """
try:
    await memory.create_entities(entities=[{"name": "ptc-mcp", "observations": []}])
except TypeError as exc:
    print("TypeError:", exc)
await memory.create_entities(entities=[{"name": "ptc-mcp", "entityType": "project", "observations": ["calls tools"]}])
graph = await memory.read_graph()
print([e["name"] for e in graph["entities"]])
"""
    result = await run_program(code, servers)
    assert result.status == "ok", result.error
    first, second = result.stdout.splitlines()
    assert first.startswith("TypeError: memory.create_entities(): ")
    assert "'entities[0].entityType'" in first
    assert second == "['ptc-mcp']"


@pytest.mark.node
@pytest.mark.skipif(_npm_servers_missing() is not None, reason=str(_npm_servers_missing()))
@pytest.mark.anyio
async def test_tools_read_only_keeps_a_real_servers_writing_tools_from_programs(
    run_program: Any, tmp_path: Path
) -> None:
    servers = {name: config.model_dump(exclude_none=True) for name, config in _npm_servers(tmp_path).items()}
    code = """
names = sorted(tool["name"] for tool in tools.search("knowledge graph entities", limit=20))
try:
    await call_tool("memory.create_entities", {"entities": []})
except ToolError as exc:
    print(type(exc).__name__, "denied")
graph = await memory.read_graph()
print(names, hasattr(memory, "create_entities"), graph["entities"])
"""
    result = await run_program(code, servers, tools={"read_only": True})
    assert result.status == "ok", result.error
    first, second = result.stdout.splitlines()
    assert first == "ToolError denied"
    assert "memory.create_entities" not in second
    assert "memory.read_graph" in second
    assert second.endswith("False []")

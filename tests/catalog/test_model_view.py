"""What the model sees matches what the program gets, over real servers.

One app holds the bundled expense server, ``mcp-server-time`` and the npm servers ``server-filesystem``,
``server-memory`` and ``server-everything`` (run from their global install, offline), plus a configured server that
cannot start. Values are checked against the return types every signature shows; then discovery (instructions,
observed result shapes, cut search lists, compact describe), task-only tools, and the names and errors a program
meets.
"""

from __future__ import annotations

import base64
import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptc_mcp.app import App, open_app
from ptc_mcp.catalog.description import build_description
from ptc_mcp.config import parse_config
from ptc_mcp.errors import ToolCallError
from ptc_mcp.examples import expenses_data
from ptc_mcp.executor import ExecuteRequest
from ptc_mcp.results import RunResult

from .type_fit import fits

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def _missing() -> str | None:
    if importlib.util.find_spec("mcp_server_time") is None:
        return "mcp-server-time is not installed (pip install -e '.[dev]')"
    if shutil.which("node") is None:
        return "Node.js is not on PATH"
    for package in ("server-memory", "server-filesystem", "server-everything"):
        if shutil.which(f"mcp-{package}") is None:
            return f"run `npm install -g @modelcontextprotocol/{package}` (tests never download packages)"
    return None


pytestmark = [pytest.mark.node, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


def _config(folder: Path) -> dict[str, Any]:
    offline = {"npm_config_offline": "true"}
    return {
        "mcpServers": {
            "expenses": {"command": sys.executable, "args": ["-m", "ptc_mcp.examples.expenses"]},
            "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
            "filesystem": {"command": "mcp-server-filesystem", "args": [str(folder)], "env": offline},
            "memory": {
                "command": "mcp-server-memory",
                "env": {**offline, "MEMORY_FILE_PATH": str(folder.parent / "memory.jsonl")},
            },
            "everything": {"command": "mcp-server-everything", "env": offline},
            "broken": {"command": str(folder.parent / "no-such-server")},
        },
        "sandbox": {"kind": "process"},
        "limits": {"timeout_s": 60},
    }


class Live:
    """The app on a portal's event loop, driven from synchronous tests (so hypothesis can drive it too)."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, app: App, folder: Path) -> None:
        self.portal = portal
        self.app = app
        self.folder = folder

    def run(self, code: str) -> RunResult:
        async def execute() -> RunResult:
            with anyio.fail_after(60):
                return await self.app.executor.execute(ExecuteRequest(code=code))

        return self.portal.call(execute)

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """A program's call as the host answers it: the value the runtime turns into Python objects."""
        return self.portal.call(self.app.bridge.for_run(100), name, arguments)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("model-view") / "files"
    folder.mkdir()
    (folder / "dot.png").write_bytes(PNG)
    (folder / "notes.txt").write_text("first line\nsecond line\n")
    config = parse_config(_config(folder), environ={})
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(open_app(config, allow_unisolated=True)) as app,
    ):
        assert set(app.pool.failures) == {"broken"}, app.pool.failures
        yield Live(portal, app, folder)


# --- every value fits the return type shown ---------------------------------------------------------------------


def _shown_return_type(live: Live, name: str) -> str:
    """The return type of ``name`` as describe, search and the full description show it (asserting they agree)."""
    index = live.app.bridge.snapshot.index
    signature = index.describe(name)["signature"]
    found = index.search_page(name, limit=1)["matches"][0]
    assert found["name"] == name and found["signature"] == signature
    call = index.describe(name)["call"]
    full = build_description(live.app.bridge.snapshot.tools.values(), presentation="full")
    assert f"{call}{signature}" in full
    return str(signature).split(" -> ", 1)[1]


def _fixed_calls(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """One call of every callable tool whose arguments can be given offline (plus a few more)."""
    f = str(folder)
    return [
        ("expenses.get_team_members", {"department": "engineering"}),
        ("expenses.get_team_members", {"department": "nobody"}),
        ("expenses.get_expenses", {"employee_id": "E1", "quarter": "Q3"}),
        ("expenses.get_custom_budget", {"user_id": "E1"}),
        ("time.get_current_time", {"timezone": "Europe/Paris"}),
        ("time.convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}),
        ("filesystem.list_allowed_directories", {}),
        ("filesystem.write_file", {"path": f"{f}/new.txt", "content": "hello"}),
        ("filesystem.read_text_file", {"path": f"{f}/notes.txt"}),
        ("filesystem.read_file", {"path": f"{f}/notes.txt", "head": 1}),
        ("filesystem.read_multiple_files", {"paths": [f"{f}/notes.txt", f"{f}/new.txt"]}),
        ("filesystem.read_media_file", {"path": f"{f}/dot.png"}),
        ("filesystem.list_directory", {"path": f}),
        ("filesystem.list_directory_with_sizes", {"path": f}),
        ("filesystem.directory_tree", {"path": f}),
        ("filesystem.get_file_info", {"path": f"{f}/notes.txt"}),
        ("filesystem.search_files", {"path": f, "pattern": "*.txt"}),
        ("filesystem.create_directory", {"path": f"{f}/sub"}),
        ("filesystem.edit_file", {"path": f"{f}/new.txt", "edits": [{"oldText": "hello", "newText": "hi"}]}),
        ("filesystem.move_file", {"source": f"{f}/new.txt", "destination": f"{f}/sub/new.txt"}),
        ("memory.create_entities", {"entities": [{"name": "ptc", "entityType": "project", "observations": ["x"]}]}),
        ("memory.create_relations", {"relations": [{"from": "ptc", "to": "ptc", "relationType": "uses"}]}),
        ("memory.add_observations", {"observations": [{"entityName": "ptc", "contents": ["y"]}]}),
        ("memory.read_graph", {}),
        ("memory.search_nodes", {"query": "ptc"}),
        ("memory.open_nodes", {"names": ["ptc"]}),
        ("memory.delete_observations", {"deletions": [{"entityName": "ptc", "observations": ["y"]}]}),
        ("memory.delete_relations", {"relations": [{"from": "ptc", "to": "ptc", "relationType": "uses"}]}),
        ("memory.delete_entities", {"entityNames": ["ptc"]}),
        ("everything.echo", {"message": "hi"}),
        ("everything.get-sum", {"a": 2, "b": 3.5}),
        ("everything.get-structured-content", {"location": "Chicago"}),
        ("everything.get-tiny-image", {}),
        ("everything.get-annotated-message", {"messageType": "success", "includeImage": True}),
        ("everything.get-resource-links", {"count": 2}),
        ("everything.get-resource-reference", {"resourceType": "Blob", "resourceId": 2}),
    ]


def test_every_tool_of_five_real_servers_returns_a_value_that_fits_its_shown_return_type(live: Live) -> None:
    checked = set()
    for name, arguments in _fixed_calls(live.folder):
        value = live.call(name, arguments)
        shown = _shown_return_type(live, name)
        assert fits(value, shown), f"{name} returned {value!r:.300}, which is not a {shown}"
        checked.add(name)
    assert "filesystem.read_media_file" in checked and len(checked) >= 30


EMPLOYEES = [person["id"] for person in expenses_data.dataset(expenses_data.SEED).people]
GENERATED_CALLS = st.one_of(
    st.tuples(
        st.just("expenses.get_expenses"),
        st.fixed_dictionaries(
            {"employee_id": st.sampled_from(EMPLOYEES), "quarter": st.sampled_from(["Q1", "Q2", "Q3", "Q4"])}
        ),
    ),
    st.tuples(st.just("expenses.get_custom_budget"), st.fixed_dictionaries({"user_id": st.sampled_from(EMPLOYEES)})),
    st.tuples(
        st.just("expenses.get_team_members"),
        st.fixed_dictionaries({"department": st.sampled_from(["engineering", "sales", "finance", "x"])}),
    ),
    st.tuples(
        st.just("time.get_current_time"),
        st.fixed_dictionaries({"timezone": st.sampled_from(["UTC", "America/New_York", "Australia/Lord_Howe"])}),
    ),
    st.tuples(
        st.just("memory.search_nodes"),
        st.fixed_dictionaries({"query": st.text(alphabet="abcxyz ", max_size=8)}),
    ),
    st.tuples(
        st.just("everything.get-sum"),
        st.fixed_dictionaries({"a": st.integers(-1000, 1000), "b": st.floats(-1e6, 1e6, allow_nan=False)}),
    ),
    st.tuples(
        st.just("everything.get-structured-content"),
        st.fixed_dictionaries({"location": st.sampled_from(["New York", "Chicago", "Los Angeles"])}),
    ),
)


def test_generated_calls_return_values_that_fit_their_shown_return_types(live: Live) -> None:
    @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(GENERATED_CALLS)
    def check(generated: tuple[str, dict[str, Any]]) -> None:
        name, arguments = generated
        try:
            value = live.call(name, arguments)
        except ToolCallError:
            return  # a tool's own refusal has no value to check
        shown = _shown_return_type(live, name)
        assert fits(value, shown), f"{name}({arguments}) returned {value!r:.300}, which is not a {shown}"

    check()


# --- binary content, the envelope ------------------------------------------------------------------------------


def test_binary_content_reaches_the_program_as_binary_though_the_server_also_sends_structured_content(
    live: Live,
) -> None:
    result = live.run(
        f"img = await filesystem.read_media_file(path={str(live.folder / 'dot.png')!r})\n"
        "type(img).__name__, img.mime_type, img.data[:4]"
    )
    assert result.status == "ok", result.error
    assert result.result_repr == "('Binary', 'image/png', b'\\x89PNG')"
    assert "filesystem.read_media_file(*, path: str) -> Binary | list[Binary]" in build_description(
        live.app.bridge.snapshot.tools.values(), presentation="full"
    )


def test_an_sdk_result_envelope_is_unwrapped_in_the_signature_as_in_the_value(live: Live) -> None:
    signature = live.app.bridge.snapshot.index.describe("expenses.get_team_members")["signature"]
    assert signature.endswith("-> list[{id: str, name: str, department: str, title: str, team: str}]")
    result = live.run('team = await expenses.get_team_members(department="engineering")\nteam[0]["id"]')
    assert result.status == "ok", result.error
    assert result.result == "E1"


# --- discovery ---------------------------------------------------------------------------------------------------


def test_a_servers_instructions_show_in_the_description_and_in_describe_of_the_server(live: Live) -> None:
    snapshot = live.app.bridge.snapshot
    assert "Standard quarterly travel budget: 5000 USD" in snapshot.description
    instructions = {name: info.instructions for name, info in live.app.pool.server_info().items()}
    listing = build_description(snapshot.tools.values(), presentation="namespaces", instructions=instructions)
    everything_line = next(line for line in listing.splitlines() if line.startswith("- everything"))
    assert "Audience:" in everything_line and len(everything_line) < 320  # capped, markdown heading skipped
    assert "Standard quarterly travel budget: 5000 USD" in listing
    result = live.run('d = tools.describe("expenses")\nd["instructions"][:24], d["tools"][0]')
    assert result.status == "ok", result.error
    assert result.result[0] == "Company expense system f"
    assert result.result[1].startswith("get_custom_budget(*, user_id: str)")


def test_after_its_first_call_a_tool_without_output_schema_shows_the_observed_result_shape(live: Live) -> None:
    def observed() -> bool:
        return live.run('"observed_result" in tools.describe("everything.get-resource-links")').result is True

    # Shapes last one connection to the server: a new connection may be a new version of the server.
    live.portal.call(live.app.pool.servers["everything"].aclose_connection)
    assert not observed()
    live.run("await everything.get_resource_links(count=2)")
    after = live.run(
        'd = tools.describe("everything.get-resource-links")["observed_result"]\n'
        's = [m for m in tools.search("resource links", limit=3) if m["name"] == "everything.get-resource-links"]\n'
        'd, s[0]["observed_result"]["type"]'
    )
    assert after.status == "ok", after.error
    described, searched = after.result
    assert described["type"].startswith("list[") and searched == described["type"]
    assert described["example"].startswith("[") and len(described["example"]) <= 160
    live.portal.call(live.app.pool.servers["everything"].aclose_connection)
    assert not observed()


def test_search_says_when_it_cut_its_list(live: Live) -> None:
    result = live.run('r = tools.search("file directory", limit=2)\nprint(r)\nlen(r), r.total')
    assert result.status == "ok", result.error
    shown, total = result.result
    assert shown == 2 and total > 2
    assert f"(2 of {total} matches; raise limit= to see more)" in result.stdout


def test_describe_is_compact_unless_the_schemas_are_asked_for(live: Live) -> None:
    result = live.run(
        'd = tools.describe("everything.get-annotated-message")\n'
        'full = tools.describe("everything.get-annotated-message", schemas=True)\n'
        'sorted(d), d["arguments"][0], "input_schema" in full'
    )
    assert result.status == "ok", result.error
    keys, first, has_schema = result.result
    assert "input_schema" not in keys and has_schema
    assert {"signature", "summary", "arguments", "annotations"} <= set(keys)
    assert first["name"] == "messageType" and first["type"] == "Literal['error', 'success', 'debug']"
    expenses = live.app.bridge.snapshot.index.describe("expenses.get_expenses")
    assert expenses["signature"].endswith("-> list[dict]")  # nine keys: too many to show inline
    assert expenses["result_fields"]["amount"] == "float"
    assert expenses["result_fields"]["status"] == "Literal['approved', 'pending', 'rejected']"


# --- task-only tools ---------------------------------------------------------------------------------------------


def test_a_task_only_tool_is_not_advertised_and_a_call_to_it_says_why(live: Live) -> None:
    snapshot = live.app.bridge.snapshot
    assert "simulate-research-query" not in snapshot.description
    assert "simulate_research_query" not in snapshot.description
    assert "everything.simulate-research-query" in snapshot.not_callable
    result = live.run('await call_tool("everything.simulate-research-query", {"topic": "x"})')
    assert result.error is not None and result.error.type == "tool_error"
    assert "task-only" in result.error.message
    assert result.tool_calls == 0


def test_check_lists_task_only_tools_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ptc_mcp.cli import main

    config = {"mcpServers": {"everything": {"command": "mcp-server-everything"}}, "sandbox": {"kind": "process"}}
    path = tmp_path / "config.json"
    path.write_text(__import__("json").dumps(config))
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    section = out.split("not callable from programs", 1)[1].split("execute_program description", 1)[0]
    assert "everything.simulate-research-query: task-only" in section


# --- names and errors --------------------------------------------------------------------------------------------


def test_a_shadowed_server_name_used_as_a_global_points_to_servers(live: Live) -> None:
    bare = live.run('await time.get_current_time(timezone="UTC")')
    assert bare.error is not None and bare.error.exc_type == "NameError"
    assert "servers.time.get_current_time" in bare.error.message
    assert bare.error.traceback is not None and "servers.time" in bare.error.traceback
    imported = live.run('import time\nawait time.get_current_time(timezone="UTC")')
    assert imported.error is not None and imported.error.exc_type == "AttributeError"
    assert "servers.time.get_current_time" in imported.error.message
    unrelated = live.run("import time\ntime.sleeep(1)")
    assert unrelated.error is not None and "servers.time" not in unrelated.error.message


def test_a_configured_server_that_failed_says_it_is_unavailable_and_why(live: Live) -> None:
    result = live.run("await broken.some_tool()")
    assert result.error is not None and result.error.exc_type == "ToolError"
    assert "server 'broken' is unavailable: " in result.error.message
    assert str(live.run('servers["broken"]').result_repr).startswith("<server broken: unavailable")


def test_call_tool_accepts_the_identifier_form_and_refused_calls_are_not_tool_calls(live: Live) -> None:
    result = live.run(
        'a = await call_tool("everything.get_sum", {"a": 1, "b": 2})\n'
        "try:\n"
        '    await call_tool("everything.no_such_tool", {})\n'
        "except ToolError as exc:\n"
        "    print(exc)\n"
        "try:\n"
        '    await expenses.get_expenses(employe_id="E1", quarter="Q3")\n'
        "except TypeError as exc:\n"
        "    print(exc)\n"
        "a"
    )
    assert result.status == "ok", result.error
    assert "3" in str(result.result)
    unknown, misspelled = result.stdout.splitlines()
    assert "unknown tool 'everything.no_such_tool'" in unknown
    assert "missing required argument 'employee_id'" in misspelled and "did you mean 'employee_id'" in misspelled
    assert result.tool_calls == 1
    assert "[ok · 1 tool call ·" in result.to_text()

"""Programs through ``execute_program``: the official MCP client, in process, against a real App.

One App for the module (the example server and ``mcp-server-time`` over stdio, the ``process`` sandbox), so each
test pays only for its own interpreter.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcp import Client

from ptc_mcp.app import App, open_app
from ptc_mcp.demo import audit_program
from ptc_mcp.examples.expenses_data import dataset, expenses_of, over_budget_engineers
from ptc_mcp.server import build_server
from tests.conftest import EXPENSES_STDIO, TIME_STDIO, test_config
from tests.mcp_calls import error_type, execute, structured

pytestmark = pytest.mark.anyio

WAIT_S = 60.0
HAS_TIME_SERVER = importlib.util.find_spec("mcp_server_time") is not None


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def app() -> AsyncIterator[App]:
    servers: dict[str, Any] = {"expenses": EXPENSES_STDIO}
    if HAS_TIME_SERVER:
        servers["time"] = TIME_STDIO
    with anyio.fail_after(WAIT_S):
        async with open_app(test_config(servers), allow_unisolated=True) as running:
            assert running.pool.failures == {}
            yield running


@pytest.fixture
async def client(app: App) -> AsyncIterator[Client]:
    """A client on the handshake-era protocol: its MCP session owns one interpreter."""
    async with Client(build_server(app), mode="legacy") as connected:
        yield connected


async def test_the_audit_program_finds_the_ground_truth(client: Client) -> None:
    result = await execute(client, audit_program())
    assert not result.is_error, result
    expected = [{key: row[key] for key in ("id", "name", "spent", "budget")} for row in over_budget_engineers()]
    assert structured(result)["result"] == expected
    assert structured(result)["tool_calls"] == 17


async def test_a_loop_of_200_calls_that_branches_on_results_sums_correctly(client: Client) -> None:
    people = [person["id"] for person in dataset().people]
    code = (
        f"people = {people!r}\n"
        "total = 0.0\n"
        "for i in range(200):\n"
        "    claims = await expenses.get_expenses(employee_id=people[i % len(people)], quarter='Q3')\n"
        "    if i % 2 == 0:\n"
        "        total += sum(c['amount'] for c in claims if c['category'] == 'travel')\n"
        "    else:\n"
        "        total += len(claims)\n"
        "round(total, 2)"
    )
    expected = 0.0
    for i in range(200):
        claims = expenses_of(people[i % len(people)], "Q3")
        if i % 2 == 0:
            expected += sum(c["amount"] for c in claims if c["category"] == "travel")
        else:
            expected += len(claims)
    result = await execute(client, code)
    assert not result.is_error, result
    assert structured(result)["result"] == round(expected, 2)
    assert structured(result)["tool_calls"] == 200


async def test_gathering_50_calls_returns_every_result_in_order(client: Client) -> None:
    code = (
        "ids = ['E%d' % (i % 8 + 1) for i in range(50)]\n"
        "rows = await asyncio.gather(*[expenses.get_expenses(employee_id=i, quarter='Q1') for i in ids])\n"
        "[len(r) for r in rows]"
    )
    result = await execute(client, code)
    assert not result.is_error, result
    assert structured(result)["result"] == [len(expenses_of(f"E{i % 8 + 1}", "Q1")) for i in range(50)]


async def test_a_tool_error_is_catchable_in_the_program(client: Client) -> None:
    code = (
        "try:\n"
        "    await expenses.get_expenses(employee_id='nobody', quarter='Q3')\n"
        "except ToolError as exc:\n"
        "    caught = [exc.error_type, 'nobody' in exc.message]\n"
        "caught"
    )
    result = await execute(client, code)
    assert not result.is_error, result
    assert structured(result)["result"] == ["tool_error", True]


async def test_an_uncaught_tool_error_ends_the_run_as_tool_error(client: Client) -> None:
    result = await execute(client, "await expenses.get_custom_budget(user_id='nobody')")
    assert result.is_error
    assert error_type(result) == "tool_error"


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        pytest.param("employe_id='E1', quarter='Q3'", "employee_id", id="misspelled-required"),
        pytest.param("employee_id='E1', quarter=3", "quarter", id="wrong-type"),
    ],
)
async def test_a_wrong_argument_raises_type_error_naming_it(client: Client, arguments: str, named: str) -> None:
    code = (
        f"try:\n    await expenses.get_expenses({arguments})\nexcept TypeError as exc:\n    message = str(exc)\nmessage"
    )
    result = await execute(client, code)
    assert not result.is_error, result
    assert f"'{named}'" in structured(result)["result"]


async def test_the_last_expression_is_returned_as_structured_content(client: Client) -> None:
    result = await execute(client, "print('side note')\n{'answer': [1, 2.5, 'three', None]}")
    assert not result.is_error
    assert structured(result)["result"] == {"answer": [1, 2.5, "three", None]}
    assert structured(result)["stdout"] == "side note\n"
    assert structured(result)["status"] == "ok"


async def test_a_value_that_is_not_json_comes_back_as_its_repr(client: Client) -> None:
    result = await execute(client, "{1, 2}")
    assert structured(result)["result"] is None
    assert structured(result)["result_repr"] == "{1, 2}"


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("expenses.get_expenses(employee_id='E1', quarter='Q3')", id="last-expression"),
        pytest.param("rows = expenses.get_expenses(employee_id='E1', quarter='Q3')\nrows[0]", id="subscripted"),
    ],
)
async def test_a_forgotten_await_gets_a_hint(client: Client, code: str) -> None:
    result = await execute(client, code)
    assert result.is_error
    assert error_type(result) == "program_error"
    assert "await" in structured(result)["error"]["message"]


async def test_an_exception_is_a_program_error_with_the_programs_own_traceback(client: Client) -> None:
    result = await execute(client, "def check(x):\n    return 1 / x\n\ncheck(0)")
    assert result.is_error
    error = structured(result)["error"]
    assert (error["type"], error["exc_type"]) == ("program_error", "ZeroDivisionError")
    assert 'File "<program>", line 4, in <module>' in error["traceback"]
    assert 'File "<program>", line 2, in check' in error["traceback"]
    assert "ptc_runtime" not in error["traceback"]
    assert "ZeroDivisionError" in result.content[0].text  # type: ignore[union-attr]


async def test_printing_ten_megabytes_returns_capped_output_with_a_marker(client: Client, app: App) -> None:
    cap = app.config.limits.max_output_bytes
    result = await execute(client, "print('x' * (10 * 1024 * 1024))")
    stdout = structured(result)["stdout"]
    assert error_type(result) == "output_limit"
    assert structured(result)["output_truncated"]
    assert stdout.startswith("x" * 1000)
    assert "output truncated" in stdout
    assert len(stdout.encode()) < cap + 200
    assert not (await execute(client, "'next run'")).is_error


async def test_printing_a_little_past_the_cap_is_truncated_but_ok(client: Client, app: App) -> None:
    cap = app.config.limits.max_output_bytes
    result = await execute(client, f"print('y' * {2 * cap})\n'done'")
    assert not result.is_error
    assert structured(result)["output_truncated"]
    assert "output truncated" in structured(result)["stdout"]
    assert structured(result)["result"] == "done"


async def test_binary_nul_ansi_and_lone_surrogates_come_back_as_valid_utf8(client: Client) -> None:
    code = (
        "import os, sys\n"
        "print('nul\\x00 ansi\\x1b[31mred\\x1b[0m lone\\ud800 high\\udcff')\n"
        "sys.stdout.write('\\udfff\\n')\n"
        "sys.stdout.flush()\n"
        "os.write(1, b'raw \\xff\\xfe\\x00 bytes\\n')\n"
        "os.write(2, b'\\x1b]0;title\\x07\\n')\n"
    )
    result = await execute(client, code)
    assert not result.is_error, result
    payload = structured(result)
    for text in (payload["stdout"], payload["stderr"], result.content[0].text):  # type: ignore[union-attr]
        text.encode("utf-8")  # raises on lone surrogates
        assert "\x00" not in text
        assert "\x1b" not in text
        assert "\x07" not in text
    assert "\ufffd" in payload["stdout"]
    assert "raw" in payload["stderr"]


async def test_a_variable_survives_into_the_next_call_of_the_same_session(client: Client) -> None:
    await execute(client, "remembered = 'from the first call'")
    result = await execute(client, "remembered")
    assert structured(result)["result"] == "from the first call"


async def test_a_variable_is_not_visible_from_another_session(client: Client, app: App) -> None:
    await execute(client, "secret_of_first = 1")
    async with Client(build_server(app), mode="legacy") as other:
        result = await execute(other, "secret_of_first")
    assert error_type(result) == "program_error"
    assert structured(result)["error"]["exc_type"] == "NameError"


async def test_the_session_handle_continues_a_session_on_the_stateless_protocol(app: App) -> None:
    async with Client(build_server(app), mode="2026-07-28") as stateless:
        first = await execute(stateless, "counter = 1")
        handle = structured(first)["session"]
        assert handle
        without = await execute(stateless, "counter")
        with_handle = await execute(stateless, "counter += 1\ncounter", session=handle)
    assert error_type(without) == "program_error"
    assert structured(with_handle)["result"] == 2
    assert structured(with_handle)["session"] == handle


async def test_reset_starts_a_fresh_interpreter(client: Client) -> None:
    await execute(client, "kept = 1")
    result = await execute(client, "kept", reset=True)
    assert error_type(result) == "program_error"
    assert structured(result)["error"]["exc_type"] == "NameError"


async def test_an_unknown_session_handle_is_invalid_input(client: Client) -> None:
    result = await execute(client, "1", session="ptc_not-a-real-handle")
    assert error_type(result) == "invalid_input"


@pytest.mark.skipif(not HAS_TIME_SERVER, reason="mcp-server-time is not installed")
async def test_import_time_works_next_to_a_server_named_time(client: Client) -> None:
    code = (
        "import time\n"
        "started = time.monotonic()\n"
        "now = await servers['time'].get_current_time(timezone='UTC')\n"
        "[type(time).__name__, time.monotonic() >= started, now['timezone']]"
    )
    result = await execute(client, code)
    assert not result.is_error, result
    assert structured(result)["result"] == ["module", True, "UTC"]


@pytest.mark.skipif(not HAS_TIME_SERVER, reason="mcp-server-time is not installed")
async def test_a_server_named_after_a_module_is_reached_through_servers_not_a_bare_global(client: Client) -> None:
    code = "[(await servers.time.get_current_time(timezone='UTC'))['timezone'], 'time' in globals()]"
    result = await execute(client, code, reset=True)
    assert not result.is_error, result
    assert structured(result)["result"] == ["UTC", False]


async def test_tools_search_and_describe_find_the_example_tools(client: Client) -> None:
    code = (
        "found = [r['name'] for r in tools.search('expense claims')][:3]\n"
        "found, 'employee_id' in str(tools.describe('expenses.get_expenses'))"
    )
    result = await execute(client, code)
    assert not result.is_error, result
    names, described = structured(result)["result"]
    assert "expenses.get_expenses" in names
    assert described


async def test_the_tool_list_offers_one_tool_with_input_and_output_schemas(client: Client) -> None:
    listed = await client.list_tools()
    assert [tool.name for tool in listed.tools] == ["execute_program"]
    tool = listed.tools[0]
    assert tool.input_schema["required"] == ["code"]
    # The session rule is said once, here, not again in the description (the model reads both on every call).
    assert tool.input_schema["properties"]["session"]["description"] == (
        "A result's session: pass it back to keep your variables."
    )
    assert "session" not in (tool.description or "")
    assert tool.output_schema is not None
    assert "expenses" in (tool.description or "")


async def test_the_output_schema_is_plain_json_schema_that_every_result_meets(client: Client) -> None:
    """Clients validate every result against it: nullable fields are type lists, nothing is a ``$ref`` (cheap to
    check), and results of every shape, failed runs' included, meet it."""
    import jsonschema

    listed = await client.list_tools()
    schema = listed.tools[0].output_schema
    assert schema is not None
    text = str(schema)
    assert "anyOf" not in text and "$ref" not in text and "'title'" not in text
    assert schema["properties"]["error"]["type"] == ["object", "null"]
    validator = jsonschema.Draft202012Validator(schema)
    for code in ("print(1)", "x = 1\n[x, {'a': None}]", "raise ValueError('no')", "object()"):
        result = await execute(client, code)
        validator.validate(structured(result))
    assert not validator.is_valid({"status": "ok", "error": {"type": "not_an_error_type", "message": "m"}})
    assert not validator.is_valid({"status": "ok", "session": 7})

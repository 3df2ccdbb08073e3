"""Limits and bad input through ``execute_program``: typed errors, nothing left running, the server keeps serving."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcp import Client

from ptc_mcp.app import App, open_app
from ptc_mcp.config import Config
from ptc_mcp.sandboxes import sandbox_limits
from ptc_mcp.sandboxes.process.backend import ProcessBackend, ProcessSession
from ptc_mcp.sandboxes.process.isolation import processes_of_user
from ptc_mcp.server import build_server
from tests.conftest import start_time, test_config
from tests.mcp_calls import error_type, execute, structured

pytestmark = pytest.mark.anyio

WAIT_S = 60.0
GRACE_S = 3.0


class RecordingBackend(ProcessBackend):
    """The real ``process`` backend, remembering every session it started."""

    def __init__(self, config: Config) -> None:
        super().__init__(sandbox_limits(config))
        self.started: list[ProcessSession] = []

    async def start_session(self) -> ProcessSession:
        session = await super().start_session()
        self.started.append(session)
        return session


def remains_of(session: ProcessSession) -> list[str]:
    """What of a closed process session is still on the host."""
    launch = session.launch
    found = [f"launched pid {session.pid}"] if start_time(session.pid) is not None else []
    if launch.session_user and launch.user is not None:
        found += [f"pid {pid} of session uid {launch.user}" for pid in processes_of_user(launch.user)]
    if launch.scratch_dir.exists():
        found.append(f"scratch directory {launch.scratch_dir}")
    return found


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def app_and_backend() -> AsyncIterator[tuple[App, RecordingBackend]]:
    config = test_config(limits={"timeout_s": 3, "max_tool_calls": 3}, tools={"deny": ["expenses.get_custom_*"]})
    backend = RecordingBackend(config)
    with anyio.fail_after(WAIT_S):
        async with open_app(config, backend=backend, allow_unisolated=True) as app:
            yield app, backend


@pytest.fixture
async def recorded(
    app_and_backend: tuple[App, RecordingBackend],
) -> AsyncIterator[tuple[App, RecordingBackend, Client]]:
    """The module's App, its backend (with no sessions recorded yet) and a new client connection."""
    app, backend = app_and_backend
    backend.started.clear()
    async with Client(build_server(app), mode="legacy") as client:
        yield app, backend, client


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("while True: pass", id="busy-loop"),
        pytest.param("import time\ntime.sleep(10**6)", id="sleep"),
        pytest.param(
            "import ctypes, signal\nctypes.CDLL(None).signal(int(signal.SIGTERM), 1)\nwhile True: pass",
            id="ignores-sigterm",
        ),
        pytest.param(
            "import subprocess, sys\n"
            "subprocess.Popen([sys.executable, '-c', 'import os\\nos.setsid()\\nwhile True: pass'])\n"
            "while True: pass",
            id="escaped-child",
        ),
    ],
)
async def test_a_run_past_its_timeout_ends_as_timeout_with_nothing_left_running(
    recorded: tuple[App, RecordingBackend, Client], code: str
) -> None:
    _, backend, client = recorded
    await execute(client, "before = 'the timeout'")
    started = time.monotonic()
    result = await execute(client, code, timeout_s=1)
    elapsed = time.monotonic() - started
    assert error_type(result) == "timeout"
    assert 1.0 <= elapsed < 1.0 + GRACE_S
    assert len(backend.started) == 1
    assert remains_of(backend.started[0]) == []
    after = await execute(client, "'before' in globals()")
    assert structured(after)["result"] is False  # a fresh interpreter
    assert len(backend.started) == 2


async def test_timeout_s_is_capped_by_the_configured_limit(recorded: tuple[App, RecordingBackend, Client]) -> None:
    app, _, client = recorded
    started = time.monotonic()
    result = await execute(client, "while True: pass", timeout_s=10**6)
    assert error_type(result) == "timeout"
    assert time.monotonic() - started < app.config.limits.timeout_s + GRACE_S


async def test_a_sandbox_killed_from_outside_is_a_sandbox_failure_and_the_next_run_works(
    recorded: tuple[App, RecordingBackend, Client],
) -> None:
    _, backend, client = recorded
    await execute(client, "x = 1")
    session = backend.started[0]
    launch = session.launch
    # The program kills its own interpreter: to the host this is a sandbox dying mid-run, with no done message.
    result = await execute(client, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert error_type(result) == "sandbox_failure"
    assert not session.alive
    assert remains_of(session) == [], launch
    after = await execute(client, "'x' in globals(), 1 + 1")
    assert structured(after)["result"] == [False, 2]


async def test_a_20_megabyte_program_is_invalid_input_before_any_sandbox_starts(
    recorded: tuple[App, RecordingBackend, Client],
) -> None:
    _, backend, client = recorded
    result = await execute(client, "x = 1\n" + "#" * (20 * 1024 * 1024))
    assert result.is_error
    assert error_type(result) == "invalid_input"
    assert backend.started == []
    assert structured(await execute(client, "'serving'"))["result"] == "serving"


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"code": "print(1)\x00"}, id="nul-in-code"),
        pytest.param({"code": 42}, id="code-is-an-int"),
        pytest.param({"code": ["print(1)"]}, id="code-is-a-list"),
        pytest.param({"code": "1", "timeout_s": -1}, id="negative-timeout"),
        pytest.param({"code": "1", "timeout_s": "5"}, id="timeout-is-a-string"),
        pytest.param({"code": "1", "reset": "yes"}, id="reset-is-a-string"),
        pytest.param({"code": "1", "session": 7}, id="session-is-an-int"),
        pytest.param({"code": "1", "extra": True}, id="unknown-argument"),
        pytest.param({}, id="no-code"),
    ],
)
async def test_bad_arguments_are_invalid_input_before_any_sandbox_starts(
    recorded: tuple[App, RecordingBackend, Client], arguments: dict[str, Any]
) -> None:
    _, backend, client = recorded
    with anyio.fail_after(WAIT_S):
        result = await client.call_tool("execute_program", arguments)
    assert result.is_error
    assert error_type(result) == "invalid_input"
    assert backend.started == []
    assert structured(await execute(client, "'serving'"))["result"] == "serving"


async def test_an_unknown_tool_name_is_invalid_input(recorded: tuple[App, RecordingBackend, Client]) -> None:
    _, backend, client = recorded
    with anyio.fail_after(WAIT_S):
        result = await client.call_tool("run_python", {"code": "1"})
    assert error_type(result) == "invalid_input"
    assert backend.started == []


async def test_calling_a_denied_tool_is_tool_denied(recorded: tuple[App, RecordingBackend, Client]) -> None:
    _, _, client = recorded
    by_name = await execute(client, "await call_tool('expenses.get_custom_budget', {'user_id': 'E1'})")
    caught = await execute(
        client,
        "try:\n    await call_tool('expenses.get_custom_budget', {'user_id': 'E1'})\n"
        "except ToolError as exc:\n    kind = exc.error_type\nkind",
    )
    assert error_type(by_name) == "tool_denied"
    assert structured(caught)["result"] == "tool_denied"


async def test_a_denied_tool_is_not_in_the_namespace_or_the_description(
    recorded: tuple[App, RecordingBackend, Client],
) -> None:
    _, _, client = recorded
    listed = await client.list_tools()
    result = await execute(client, "await expenses.get_custom_budget(user_id='E1')")
    # The server's own instructions may name it; no tool line does.
    assert "expenses.get_custom_budget(" not in (listed.tools[0].description or "")
    assert error_type(result) == "program_error"
    assert structured(result)["error"]["exc_type"] == "AttributeError"


async def test_the_tool_call_budget_ends_the_run_as_tool_call_limit(
    recorded: tuple[App, RecordingBackend, Client],
) -> None:
    _, _, client = recorded
    result = await execute(client, "for i in range(5):\n    await expenses.get_team_members(department='engineering')")
    assert error_type(result) == "tool_call_limit"
    assert structured(result)["tool_calls"] == 3


async def test_the_tool_call_budget_cannot_be_caught_away(recorded: tuple[App, RecordingBackend, Client]) -> None:
    _, _, client = recorded
    code = (
        "try:\n"
        "    for i in range(5):\n"
        "        await expenses.get_team_members(department='engineering')\n"
        "except ToolError as exc:\n"
        "    print(exc.error_type)\n"
        "await expenses.get_team_members(department='engineering')"
    )
    result = await execute(client, code)
    assert structured(result)["stdout"] == "tool_call_limit\n"
    assert error_type(result) == "tool_call_limit"
    assert structured(result)["tool_calls"] == 3


async def test_the_budget_is_per_run(recorded: tuple[App, RecordingBackend, Client]) -> None:
    _, _, client = recorded
    for _ in range(3):
        result = await execute(client, "len(await expenses.get_team_members(department='engineering'))")
        assert not result.is_error


async def test_a_program_cannot_signal_the_server(recorded: tuple[App, RecordingBackend, Client]) -> None:
    _, _, client = recorded
    code = f"import os, signal\ntry:\n    os.kill({os.getpid()}, signal.SIGTERM)\nexcept OSError:\n    r = 'refused'\nr"
    result = await execute(client, code)
    assert structured(result)["result"] == "refused"
    assert structured(await execute(client, "'alive'"))["result"] == "alive"

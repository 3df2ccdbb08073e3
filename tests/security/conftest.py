"""The security suite's harness: every case of SECURITY.md, once per isolating backend.

``secured`` runs a real ``App`` (executor, tool bridge, downstream pool) on each backend of the conformance
registry (``tests/sandboxes/conftest.py``'s ``BACKENDS``; unavailable backends skip with the reason) and talks
to it through the real MCP server with the official in-memory client. After every test it checks that the
backend left nothing behind: no process, container or scratch directory the test started.

The suite prints how many cases ran per backend, and checks at the end of the session that the whole suite
left no processes, containers or temporary directories behind.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client

from ptc_mcp.app import App, open_app
from ptc_mcp.config import parse_config
from ptc_mcp.sandboxes.base import SandboxBackend, SandboxSession
from ptc_mcp.sandboxes.process.isolation import default_scratch_root
from ptc_mcp.server import TOOL_NAME, build_server
from tests.conftest import process_tree, start_time
from tests.sandboxes.conftest import _MARKS, BACKENDS, BackendUnderTest, Leftovers

WAIT_S = 60.0
"""Upper bound for any one call in this suite (a case that needs longer is a failure, not a slow pass)."""
SETTLE_S = 10.0
"""How long leftovers may take to disappear after everything was closed (process exit, container removal)."""
MY_PID = os.getpid()


# --- what is running -------------------------------------------------------------------------------------------


def my_processes() -> set[tuple[int, str]]:
    """Every live descendant of this test process, as (pid, start time) so reused pids differ."""
    found = set()
    for pid in process_tree(MY_PID):
        started = start_time(pid)
        if pid != MY_PID and started is not None:
            found.add((pid, started))
    return found


def my_scratch_dirs() -> set[str]:
    """Sandbox scratch directories made by this test process (the name carries the server's pid)."""
    root = default_scratch_root()
    try:
        return {entry for entry in os.listdir(root) if entry.startswith(f"ptc-mcp-{MY_PID}.")}
    except OSError:
        return set()


TEMP_PREFIXES = ("ptc-mcp-image-",)
"""Entries of the system temp directory that the code this suite drives may create besides scratch directories:
docker image builds (other ``ptc-mcp-*`` entries belong to other suites that may run at the same time)."""


def my_temp_dirs() -> set[str]:
    """Entries of the system temp directory that the suite's code paths may create."""
    try:
        return {entry for entry in os.listdir(tempfile.gettempdir()) if entry.startswith(TEMP_PREFIXES)}
    except OSError:
        return set()


def my_containers() -> set[str]:
    """Containers labelled as started by this test process (the docker backend labels the owner's pid)."""
    try:
        import docker

        from ptc_mcp.sandboxes.docker.launch import PID_LABEL
    except ImportError:
        return set()
    try:
        client = docker.from_env(timeout=10)
        return {c.short_id for c in client.containers.list(all=True, filters={"label": f"{PID_LABEL}={MY_PID}"})}
    except Exception:  # no engine: nothing of ours can be running in it
        return set()


@dataclass(frozen=True)
class Snapshot:
    processes: set[tuple[int, str]]
    scratch_dirs: set[str]
    temp_dirs: set[str]
    containers: set[str]

    @classmethod
    def take(cls, *, temp_dirs: bool = True) -> Snapshot:
        """Now; ``temp_dirs=False`` leaves out the system temp directory (others' tests may be using it)."""
        return cls(my_processes(), my_scratch_dirs(), my_temp_dirs() if temp_dirs else set(), my_containers())

    def new_since(self, before: Snapshot) -> list[str]:
        found = [f"process {pid} ({_comm(pid)})" for pid, _ in sorted(self.processes - before.processes)]
        found += [f"scratch directory {name}" for name in sorted(self.scratch_dirs - before.scratch_dirs)]
        found += [f"temp directory {name}" for name in sorted(self.temp_dirs - before.temp_dirs)]
        found += [f"container {name}" for name in sorted(self.containers - before.containers)]
        return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def left_behind(before: Snapshot, settle_s: float = SETTLE_S, *, temp_dirs: bool = False) -> list[str]:
    """What appeared since ``before`` and is still there after up to ``settle_s`` seconds (polled)."""
    deadline = time.monotonic() + settle_s
    while True:
        leftovers = Snapshot.take(temp_dirs=temp_dirs).new_since(before)
        if not leftovers or time.monotonic() > deadline:
            return leftovers
        time.sleep(0.1)


# --- the suite checks itself ------------------------------------------------------------------------------------


@pytest.fixture(scope="package", autouse=True)
def nothing_left_behind_by_the_suite() -> Iterator[None]:
    """The whole security suite leaves no processes, containers or temporary directories behind (checked when
    its last test is done, so other suites in the same pytest session are not blamed)."""
    before = Snapshot.take()
    yield
    leftovers = left_behind(before, 30.0, temp_dirs=True)
    assert leftovers == [], f"the security suite left these behind: {leftovers}"


_outcomes: dict[str, Counter[str]] = {}
LATENCIES: dict[str, list[float]] = {}
"""Latencies of other requests measured while hostile-data attacks ran, per ``transport/backend`` (reported at the
end, test_hostile_data.py)."""
_not_holding: dict[str, dict[str, str]] = {}
"""kind → {case name: why it cannot hold under that backend's model} (see ``not_under``)."""


def _backend_of(item_or_report: Any) -> str:
    callspec = getattr(item_or_report, "callspec", None)
    if callspec is not None and "secured" in callspec.params:
        return str(callspec.params["secured"])
    nodeid = getattr(item_or_report, "nodeid", "")
    keywords = getattr(item_or_report, "keywords", {})
    # The parameter first: keywords also hold the names of the directories above (a checkout called "srt").
    for kind in BACKENDS:
        if f"[{kind}" in nodeid:
            return kind
    return next((kind for kind in BACKENDS if kind in keywords), "host")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/security/" not in report.nodeid.replace(os.sep, "/"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        kind = _backend_of(report)
        outcome = "skipped" if report.skipped else report.outcome
        _outcomes.setdefault(kind, Counter())[outcome] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _outcomes:
        return
    terminalreporter.section("security suite: cases per backend")
    for kind in [*BACKENDS, "host"]:
        counts = _outcomes.get(kind)
        if counts:
            detail = ", ".join(f"{counts[key]} {key}" for key in ("passed", "failed", "skipped") if counts[key])
            terminalreporter.write_line(f"{kind:>10}: {sum(counts.values())} cases ({detail})")
    for key, values in LATENCIES.items():
        if values:
            ordered = sorted(values)
            terminalreporter.write_line(
                f"other requests during hostile-data attacks, {key}: {len(values)} answered, median "
                f"{ordered[len(ordered) // 2] * 1000:.0f} ms, p99 {ordered[int(len(ordered) * 0.99)] * 1000:.0f} ms, "
                f"max {ordered[-1] * 1000:.0f} ms"
            )
    for kind, cases in _not_holding.items():
        for name, reason in sorted(cases.items()):
            terminalreporter.write_line(f"{kind:>10}: does not hold under {kind}'s model: {name}: {reason}")


# --- the harness ------------------------------------------------------------------------------------------------


class WatchingBackend:
    """Wraps a backend under test: every session it starts is watched, for the leftovers check afterwards."""

    def __init__(self, under_test: BackendUnderTest) -> None:
        self.under_test = under_test
        self.kind = under_test.backend.kind
        self.isolated = under_test.backend.isolated
        self.sessions: list[SandboxSession] = []
        self.checks: list[Leftovers] = []

    async def start_session(self) -> SandboxSession:
        session = await self.under_test.backend.start_session()
        self.sessions.append(session)
        self.checks.append(await self.under_test.watch(session))
        return session

    async def aclose(self) -> None:
        await self.under_test.backend.aclose()

    async def leftovers(self) -> list[str]:
        found: list[str] = []
        for check in self.checks:
            found += await check()
        return found


@dataclass
class Secured:
    """A running ptc-mcp on one backend, driven through the real MCP server."""

    kind: str
    app: App
    client: Client
    backend: WatchingBackend
    results: list[types.CallToolResult] = field(default_factory=list)

    async def call(self, code: Any = None, **arguments: Any) -> types.CallToolResult:
        """``execute_program`` through the MCP server; ``code=None`` leaves it out."""
        if code is not None:
            arguments["code"] = code
        with anyio.fail_after(WAIT_S):
            result = await self.client.call_tool(TOOL_NAME, arguments)
        self.results.append(result)
        return result

    async def run(self, code: str, **arguments: Any) -> dict[str, Any]:
        """The structured result of one program (in the MCP connection's session, as Claude Desktop does)."""
        result = await self.call(code, **arguments)
        assert result.structured_content is not None, result
        assert result.is_error == (result.structured_content["status"] == "error")
        return result.structured_content

    async def assert_serving(self) -> None:
        """The server still answers ``tools/list`` and the next run works in a fresh sandbox."""
        with anyio.fail_after(WAIT_S):
            listed = await self.client.list_tools()
        assert [tool.name for tool in listed.tools] == [TOOL_NAME]
        after = await self.run("6 * 7")
        assert after["status"] == "ok", after
        assert after["result"] == 42


def error_type(structured: dict[str, Any]) -> str | None:
    error = structured.get("error")
    return error["type"] if error else None


def security_config(servers: dict[str, Any] | None = None, **limits: Any) -> Any:
    return parse_config(
        {
            "mcpServers": servers or {},
            "sandbox": {"kind": "process"},  # ignored: the backend under test is passed in
            "limits": {"timeout_s": 20, "max_output_bytes": 4096, **limits},
            "audit": {"enabled": False},
        },
        environ={},
    )


@asynccontextmanager
async def secured_app(
    under_test: BackendUnderTest, servers: dict[str, Any] | None = None, **limits: Any
) -> AsyncIterator[Secured]:
    watching = WatchingBackend(under_test)
    backend: SandboxBackend = watching
    async with (
        open_app(security_config(servers, **limits), backend=backend) as app,
        Client(build_server(app), mode="legacy") as client,
    ):
        yield Secured(under_test.kind, app, client, watching)


@pytest.fixture(params=[pytest.param(kind, marks=_MARKS.get(kind, [])) for kind in BACKENDS])
async def secured(request: pytest.FixtureRequest) -> AsyncIterator[Secured]:
    """ptc-mcp on each isolating backend; afterwards: every session closed, nothing left behind."""
    before = Snapshot.take(temp_dirs=False)
    marker = request.node.get_closest_marker("servers")
    servers = marker.args[0] if marker is not None else None
    limits_marker = request.node.get_closest_marker("limits")
    limits = limits_marker.kwargs if limits_marker is not None else {}
    async with BACKENDS[request.param]() as under_test:
        async with secured_app(under_test, servers, **limits) as secured:
            yield secured
        watching = secured.backend
        with anyio.fail_after(WAIT_S):
            assert await watching.leftovers() == []
    assert await anyio.to_thread.run_sync(left_behind, before) == []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "servers(mcp_servers): downstream servers for the `secured` app")
    config.addinivalue_line("markers", "limits(**limits): the `limits` section for the `secured` app")
    config.addinivalue_line("markers", "applies_to(*kinds, reason): the backends a case applies to")
    config.addinivalue_line("markers", "not_under(kind, reason): a case that cannot hold under a backend's model")


def only(*kinds: str, reason: str) -> pytest.MarkDecorator:
    """Run a case on these backends only (it does not apply to the others); the rest skip with ``reason``."""
    return pytest.mark.applies_to(*kinds, reason=reason)


def not_under(kind: str, *, reason: str) -> pytest.MarkDecorator:
    """A case that cannot hold under ``kind``'s isolation model: it skips there, and the suite's summary says why."""
    return pytest.mark.not_under(kind, reason=reason)


@pytest.fixture(autouse=True)
def _not_under(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or "secured" not in callspec.params:
        return
    kind = callspec.params["secured"]
    for marker in request.node.iter_markers("not_under"):
        if marker.args[0] == kind:
            _not_holding.setdefault(kind, {})[request.node.originalname] = marker.kwargs["reason"]
            pytest.skip(f"does not hold under {kind}'s model: {marker.kwargs['reason']}")


@pytest.fixture(autouse=True)
def _applies_to(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("applies_to")
    callspec = getattr(request.node, "callspec", None)
    if marker is None or callspec is None or "secured" not in callspec.params:
        return
    kind = callspec.params["secured"]
    if kind not in marker.args:
        pytest.skip(f"does not apply to {kind}: {marker.kwargs['reason']}")

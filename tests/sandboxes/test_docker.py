"""The docker backend against a real engine, with real containers from a locally built image.

The image is built from this machine's Python (``ptc_mcp.sandboxes.docker.image``): nothing is pulled.
Network rule: nothing here sends a packet anywhere but loopback. The one outside ``connect()`` runs only inside a
container whose program has first checked that it has no interface but ``lo`` and no route.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

docker = pytest.importorskip("docker")

from ptc_mcp.bridge import ToolBridge  # noqa: E402
from ptc_mcp.catalog.policy import ToolPolicy  # noqa: E402
from ptc_mcp.config import LimitsConfig, parse_config  # noqa: E402
from ptc_mcp.errors import SandboxFailure, SandboxUnavailableError  # noqa: E402
from ptc_mcp.executor import ExecuteRequest, Executor  # noqa: E402
from ptc_mcp.sandboxes import create_backend  # noqa: E402
from ptc_mcp.sandboxes.base import RunReport, RunRequest, SandboxLimits, StreamName  # noqa: E402
from ptc_mcp.sandboxes.docker.backend import DockerBackend, DockerSession  # noqa: E402
from ptc_mcp.sandboxes.docker.image import build_local_image  # noqa: E402
from ptc_mcp.sandboxes.docker.launch import (  # noqa: E402
    HOST_LABEL,
    INSTANCE_LABEL,
    PID_LABEL,
    PID_START_LABEL,
    launch,
    owner_labels,
    remove,
)
from ptc_mcp.sandboxes.docker.settings import container_spec, parse_docker_settings  # noqa: E402
from tests.conftest import NoTools  # noqa: E402


def _engine() -> tuple[Any, str]:
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        return None, f"no Docker engine answers ({exc}); start dockerd or set DOCKER_HOST"
    return client, ""


CLIENT, NO_ENGINE = _engine()
pytestmark = [pytest.mark.docker, pytest.mark.skipif(CLIENT is None, reason=NO_ENGINE)]
WAIT_S = 30.0
MARKER = "PTC_TEST_DOCKER_SECRET_MARKER"
CATALOG = {
    "servers": [
        {
            "name": "math",
            "global": "math_tools",
            "tools": [
                {"name": "add", "attr": "add", "signature": "(a: int, b: int) -> int", "doc": "a + b"},
                {"name": "started", "attr": "started", "signature": "() -> None", "doc": "a sync point"},
            ],
        }
    ]
}


class Output:
    """An ``OutputSink`` that keeps everything."""

    def __init__(self) -> None:
        self.chunks: list[tuple[StreamName, str]] = []

    def write(self, stream: StreamName, text: str) -> None:
        self.chunks.append((stream, text))

    def text(self, stream: StreamName) -> str:
        return "".join(text for name, text in self.chunks if name == stream)


async def add(tool: str, arguments: dict[str, Any]) -> Any:
    assert tool == "math.add"
    return arguments["a"] + arguments["b"]


async def run(
    session: DockerSession, code: str, call_tool: Any = add, output: Output | None = None
) -> tuple[RunReport, Output]:
    output = output or Output()
    request = RunRequest(secrets.token_hex(8), code, CATALOG, "v1", 65536)
    with anyio.fail_after(WAIT_S):
        report = await session.run(request, call_tool, output)
    return report, output


def containers(**labels: str) -> list[dict[str, Any]]:
    filters = [f"{key}={value}" for key, value in labels.items()]
    return list(CLIENT.api.containers(all=True, filters={"label": filters}))


@pytest.fixture(scope="module")
def image() -> str:
    return build_local_image(client=CLIENT)


@pytest.fixture
def make_backend(image: str) -> Iterator[Callable[..., DockerBackend]]:
    """Backends on the local image (pull never: no registry traffic); every container removed afterwards."""
    made: list[DockerBackend] = []

    def make(
        limits: SandboxLimits | None = None, *, warm_pool: int = 0, warm_max_age_s: float = 300.0, **settings: Any
    ) -> DockerBackend:
        config = {"image": image, "pull": "never", **settings}
        backend = DockerBackend(
            parse_docker_settings(config),
            limits or SandboxLimits(),
            warm_pool=warm_pool,
            warm_max_age_s=warm_max_age_s,
        )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        anyio.run(backend.aclose)
        assert containers(**{INSTANCE_LABEL: backend.instance_id}) == []


@pytest.fixture
async def session(make_backend: Callable[..., DockerBackend]) -> AsyncIterator[DockerSession]:
    backend = make_backend()
    sandbox = await backend.start_session()
    yield sandbox
    await sandbox.aclose()


@pytest.mark.anyio
async def test_a_program_runs_and_returns_its_value(session: DockerSession) -> None:
    report, output = await run(session, "print('hello')\nimport sys\nsys.version_info[:2] >= (3, 9), 6 * 7")
    assert report.ok, report
    assert report.result == [True, 42]
    assert output.text("stdout") == "hello\n"


@pytest.mark.anyio
async def test_variables_persist_across_runs_in_one_session(session: DockerSession) -> None:
    await run(session, "counter = 41\ndef bump():\n    global counter\n    counter += 1\n    return counter")
    report, _ = await run(session, "bump()")
    assert report.result == 42


@pytest.mark.anyio
async def test_output_of_child_processes_and_c_code_arrives_as_stderr(session: DockerSession) -> None:
    report, output = await run(session, "import os\nos.write(2, b'raw bytes\\n')\nawait math_tools.add(a=1, b=1)")
    assert report.ok and report.result == 2
    assert "raw bytes" in output.text("stderr")


@pytest.mark.anyio
async def test_tool_calls_from_inside_reach_the_host_callback(session: DockerSession) -> None:
    code = (
        "total = 0\n"
        "for i in range(200):\n"
        "    total = await math_tools.add(a=total, b=i)\n"
        "results = await asyncio.gather(*(math_tools.add(a=i, b=i) for i in range(50)))\n"
        "total, sum(results)"
    )
    report, _ = await run(session, code)
    assert report.ok, report
    assert report.result == [sum(range(200)), 2 * sum(range(50))]
    assert report.tool_calls == 250


@pytest.mark.anyio
@pytest.mark.parametrize("code", ["while True: pass", "import time\ntime.sleep(10**6)"])
async def test_a_program_that_never_ends_is_stopped_by_the_callers_timeout_and_leaves_no_container(
    make_backend: Callable[..., DockerBackend], code: str
) -> None:
    backend = make_backend()
    session = await backend.start_session()
    with anyio.move_on_after(1.5) as deadline:
        await session.run(RunRequest("r1", code, CATALOG, "v1", 65536), add, Output())
    assert deadline.cancelled_caught
    with anyio.fail_after(WAIT_S):
        await session.aclose()
    assert containers(**{"ptc-mcp.session": session.session_id}) == []
    assert not session.alive


@pytest.mark.anyio
@pytest.mark.parametrize(
    "code",
    ["b = bytearray(8 * 1024**3)", "hoard = []\nwhile True:\n    hoard.append(bytearray(1024**2))"],
    ids=["one-big-allocation", "slow-growth"],
)
async def test_a_memory_bomb_ends_as_memory_limit_and_the_next_session_works(
    make_backend: Callable[..., DockerBackend], code: str
) -> None:
    backend = make_backend(SandboxLimits(memory_mb=128))
    session = await backend.start_session()
    try:
        report, _ = await run(session, code)
    except SandboxFailure as failure:
        assert failure.error_type == "memory_limit"
        assert not session.alive
    else:
        assert report.error_type == "memory_limit"  # MemoryError inside the program
    await session.aclose()
    fresh = await backend.start_session()
    report, _ = await run(fresh, "1 + 1")
    assert report.result == 2
    await fresh.aclose()


@pytest.mark.anyio
async def test_a_fork_bomb_is_bounded_by_the_pid_limit(make_backend: Callable[..., DockerBackend]) -> None:
    backend = make_backend(SandboxLimits(max_processes=32))
    session = await backend.start_session()
    code = (
        "import os, time, errno\n"
        "children, error = 0, None\n"
        "try:\n"
        "    while children < 10000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(600)\n"
        "            os._exit(0)\n"
        "        children += 1\n"
        "except OSError as exc:\n"
        "    error = errno.errorcode.get(exc.errno)\n"
        "children, error"
    )
    report, _ = await run(session, code)
    children, error = report.result
    assert error == "EAGAIN"
    assert 0 < children < 32
    await session.aclose()
    assert containers(**{"ptc-mcp.session": session.session_id}) == []


NETWORK_PROBE = """
import errno, socket
interfaces = sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:])
ipv4_routes = open("/proc/net/route").read().splitlines()[1:]
# IPv6 lists loopback's own routes (::1, the reject entries) on lo; any other device would be a way out.
ipv6_routes = [line.split() for line in open("/proc/net/ipv6_route").read().splitlines()]
ipv6_off_lo = [r for r in ipv6_routes if r[-1] != "lo"]
probe = {"interfaces": interfaces, "ipv4_routes": ipv4_routes, "ipv6_off_lo": ipv6_off_lo, "connect": None}
if interfaces == ["lo"] and not ipv4_routes and not ipv6_off_lo:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(("169.254.169.254", 80))
        probe["connect"] = "connected"
    except OSError as exc:
        probe["connect"] = errno.errorcode.get(exc.errno, str(exc))
    finally:
        s.close()
probe
"""


@pytest.mark.anyio
async def test_there_is_no_network_inside(session: DockerSession) -> None:
    report, _ = await run(session, NETWORK_PROBE)
    probe = report.result
    # These hold before the program tried any connect (it connects only if they do).
    assert probe["interfaces"] == ["lo"]
    assert probe["ipv4_routes"] == []
    assert probe["ipv6_off_lo"] == []
    assert probe["connect"] == "ENETUNREACH"


@pytest.mark.anyio
async def test_raw_sockets_are_not_permitted(session: DockerSession) -> None:
    code = (
        "import socket, errno\n"
        "try:\n"
        "    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n"
        "    outcome = 'opened'\n"
        "except OSError as exc:\n"
        "    outcome = errno.errorcode.get(exc.errno)\n"
        "outcome"
    )
    report, _ = await run(session, code)
    assert report.result == "EPERM"


@pytest.mark.anyio
async def test_a_listener_on_the_hosts_loopback_is_unreachable(session: DockerSession) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        code = (
            "import socket, errno\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "    outcome = 'connected'\n"
            "except OSError as exc:\n"
            "    outcome = errno.errorcode.get(exc.errno, str(exc))\n"
            "outcome"
        )
        report, _ = await run(session, code)
    assert report.result == "ECONNREFUSED"


@pytest.mark.anyio
async def test_the_root_filesystem_is_read_only_and_tmp_is_capped(make_backend: Callable[..., DockerBackend]) -> None:
    backend = make_backend(SandboxLimits(scratch_mb=8))
    session = await backend.start_session()
    code = (
        "import errno, os\n"
        "def attempt(path):\n"
        "    try:\n"
        "        with open(path, 'w') as f:\n"
        "            f.write('x')\n"
        "        return 'written'\n"
        "    except OSError as exc:\n"
        "        return errno.errorcode.get(exc.errno)\n"
        "tmp = attempt('/tmp/ok')\n"
        "written = 0\n"
        "try:\n"
        "    with open('/tmp/fill', 'wb') as f:\n"
        "        while written < 64 * 1024**2:\n"
        "            f.write(b'\\0' * 65536)\n"
        "            f.flush()\n"
        "            written += 65536\n"
        "    fill = 'no limit'\n"
        "except OSError as exc:\n"
        "    fill = errno.errorcode.get(exc.errno)\n"
        "root_mount = [l.split()[3].split(',')[0] for l in open('/proc/mounts') if l.split()[1] == '/']\n"
        "{'etc': attempt('/etc/evil'), 'usr': attempt('/usr/evil'), 'root_mount': root_mount,\n"
        " 'tmp': tmp, 'home': os.environ['HOME'], 'fill': fill, 'written': written}"
    )
    report, _ = await run(session, code)
    result = report.result
    assert result["etc"] == result["usr"] == "EROFS"
    assert result["root_mount"] == ["ro"]
    assert result["tmp"] == "written"
    assert result["home"] == "/tmp"
    assert result["fill"] == "ENOSPC"
    assert result["written"] <= 8 * 1024**2


@pytest.mark.anyio
async def test_the_program_runs_as_non_root_without_capabilities(session: DockerSession) -> None:
    code = (
        "import os\n"
        "lines = open('/proc/self/status').read().splitlines()\n"
        "status = dict(line.split(':\\t', 1) for line in lines if ':\\t' in line)\n"
        "os.getuid(), os.getgid(), os.getgroups(), status['CapEff'].strip(), status['CapPrm'].strip(),\\\n"
        "    status['NoNewPrivs'].strip()"
    )
    report, _ = await run(session, code)
    uid, gid, groups, cap_eff, cap_prm, no_new_privs = report.result
    assert (uid, gid) == (65534, 65534)
    assert 0 not in groups
    assert int(cap_eff, 16) == 0 and int(cap_prm, 16) == 0
    assert no_new_privs == "1"


@pytest.mark.anyio
async def test_no_host_environment_variable_reaches_the_sandbox(
    make_backend: Callable[..., DockerBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MARKER, "s3cr3t-value")
    backend = make_backend()
    session = await backend.start_session()
    report, _ = await run(session, "import os\ndict(os.environ)")
    assert MARKER not in report.result
    assert "s3cr3t-value" not in json.dumps(report.result)
    metadata = CLIENT.api.inspect_container(session.container_id)
    assert "s3cr3t-value" not in json.dumps(metadata)
    await session.aclose()


@pytest.mark.anyio
async def test_the_container_carries_the_hardening_flags(session: DockerSession) -> None:
    host = CLIENT.api.inspect_container(session.container_id)["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Memory"] == host["MemorySwap"] == 512 * 1024**2
    assert host["PidsLimit"] == 64
    assert host["NanoCpus"] == 1_000_000_000
    assert host["Init"] is True
    assert "/tmp" in host["Tmpfs"]
    assert host["LogConfig"]["Type"] == "none"


@pytest.mark.anyio
async def test_a_container_killed_from_outside_is_a_sandbox_failure_and_a_new_session_works(
    make_backend: Callable[..., DockerBackend],
) -> None:
    backend = make_backend()
    session = await backend.start_session()
    program_started = anyio.Event()

    async def tools(tool: str, arguments: dict[str, Any]) -> Any:
        if tool == "math.started":
            program_started.set()
            return None
        return await add(tool, arguments)

    async def kill_when_started() -> None:
        await program_started.wait()
        await anyio.to_thread.run_sync(CLIENT.api.kill, session.container_id)

    failures: list[SandboxFailure] = []
    async with anyio.create_task_group() as group:
        group.start_soon(kill_when_started)
        try:
            await run(session, "await math_tools.started()\nimport time\ntime.sleep(60)", tools)
        except SandboxFailure as failure:
            failures.append(failure)
    assert [failure.error_type for failure in failures] == ["sandbox_failure"]
    assert not session.alive
    await session.aclose()
    fresh = await backend.start_session()
    report, _ = await run(fresh, "await math_tools.add(a=2, b=3)")
    assert report.result == 5
    await fresh.aclose()


@pytest.mark.anyio
async def test_a_session_whose_container_died_while_idle_is_not_alive(
    make_backend: Callable[..., DockerBackend],
) -> None:
    backend = make_backend()
    session = await backend.start_session()
    await run(session, "x = 1")
    assert session.alive
    await anyio.to_thread.run_sync(CLIENT.api.kill, session.container_id)
    with anyio.fail_after(WAIT_S):
        while session.alive:
            await anyio.sleep(0.02)
    await session.aclose()


@pytest.mark.anyio
async def test_a_container_exits_by_itself_when_the_servers_connection_goes(
    make_backend: Callable[..., DockerBackend],
) -> None:
    backend = make_backend()
    session = await backend.start_session()
    # What the kernel does to the server's connections when it dies: the attach stream and the direct channel (the
    # protocol's connection, the duplicate its messages are read from, and the raw output's).
    await session._stream.aclose()
    if session._direct is not None:
        await session._direct.aclose()
    session._channel.close()
    with anyio.fail_after(WAIT_S):
        while CLIENT.api.inspect_container(session.container_id)["State"]["Running"]:
            await anyio.sleep(0.05)
    await session.aclose()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.anyio
async def test_stale_containers_of_a_dead_instance_are_reaped_at_start(
    make_backend: Callable[..., DockerBackend], image: str
) -> None:
    settings = parse_docker_settings({"image": image, "pull": "never"})
    api = CLIENT.api

    def leftover(instance: str, **extra: str) -> str:
        labels = {**owner_labels(instance), **extra}
        spec = container_spec(settings, SandboxLimits(), labels)
        return launch(api, spec, settings, {}).container_id

    dead_owner = await anyio.to_thread.run_sync(
        lambda: leftover("dead-" + secrets.token_hex(4), **{PID_LABEL: str(_dead_pid()), PID_START_LABEL: "1"})
    )
    exited_elsewhere = await anyio.to_thread.run_sync(
        lambda: leftover("gone-" + secrets.token_hex(4), **{HOST_LABEL: "another-host"})
    )
    await anyio.to_thread.run_sync(api.kill, exited_elsewhere)
    running_elsewhere = await anyio.to_thread.run_sync(
        lambda: leftover("live-" + secrets.token_hex(4), **{HOST_LABEL: "another-host"})
    )
    try:
        backend = make_backend()

        def listed() -> set[str]:
            return {c["Id"] for c in CLIENT.api.containers(all=True, filters={"label": INSTANCE_LABEL})}

        # Another server starting at the same moment may be reaping them too: docker then answers 409 ("removal
        # already in progress") and lists them until that removal ends.
        with anyio.fail_after(WAIT_S):
            while {dead_owner, exited_elsewhere} & (ids := listed()):
                await anyio.sleep(0.05)
        assert running_elsewhere in ids  # another live server's container is left alone
        assert backend.instance_id
    finally:
        for container_id in (dead_owner, exited_elsewhere, running_elsewhere):
            remove(api, container_id)


@asynccontextmanager
async def kept_warm(backend: DockerBackend) -> AsyncIterator[DockerBackend]:
    """The backend with its pool filled in the background, as the executor's task group does it."""
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(backend.keep_warm)
        yield backend
        tasks.cancel_scope.cancel()


async def wait_until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(WAIT_S):
        while not condition():
            await anyio.sleep(0.02)


def own_containers(backend: DockerBackend) -> set[str]:
    return {c["Id"] for c in containers(**{INSTANCE_LABEL: backend.instance_id})}


@pytest.mark.anyio
async def test_constructing_the_backend_starts_no_container(make_backend: Callable[..., DockerBackend]) -> None:
    backend = make_backend(warm_pool=2)
    assert own_containers(backend) == set()
    assert backend.pool.started == 0, "filling the pool is keep_warm's job"


@pytest.mark.anyio
async def test_a_warm_take_hands_out_a_pooled_container_without_starting_one(
    make_backend: Callable[..., DockerBackend],
) -> None:
    async with kept_warm(make_backend(warm_pool=2)) as backend:
        await wait_until(lambda: len(backend.pool) == 2)
        pooled = own_containers(backend)
        started = backend.pool.started
        first = await backend.start_session()
        second = await backend.start_session()
        assert first.warm and second.warm
        assert {first.container_id, second.container_id} == pooled
        assert (backend.pool.taken, backend.pool.missed) == (2, 0)
        assert backend.pool.started == started, "a take starts nothing itself"
        report, _ = await run(second, "print(1)")
        assert report.ok
        await wait_until(lambda: len(backend.pool) == 2)  # refilled in the background
        assert backend.pool.started == 4
        await first.aclose()
        await second.aclose()


@pytest.mark.anyio
async def test_the_executor_keeps_the_docker_pool_warm_and_new_sessions_take_from_it(
    make_backend: Callable[..., DockerBackend],
) -> None:
    backend = make_backend(warm_pool=1)
    bridge = ToolBridge(NoTools(), ToolPolicy(["*"], []))
    async with Executor(backend, bridge, LimitsConfig(timeout_s=WAIT_S)) as executor:
        await wait_until(lambda: len(backend.pool) == 1)  # filled by keep_warm in the executor's task group
        result = await executor.execute(ExecuteRequest(code="6 * 7"))
        assert result.status == "ok" and result.result == 42, result
        assert (backend.pool.taken, backend.pool.missed) == (1, 0)
        await wait_until(lambda: backend.pool.started == 2)  # and refilled
    assert backend.pool.started == 2


@pytest.mark.anyio
async def test_an_empty_pool_is_a_miss_and_a_cold_start(make_backend: Callable[..., DockerBackend]) -> None:
    backend = make_backend(warm_pool=1)  # keep_warm not running: the pool stays empty
    session = await backend.start_session()
    assert not session.warm
    assert (backend.pool.taken, backend.pool.missed, backend.pool.started) == (0, 1, 0)
    report, _ = await run(session, "'cold'")
    assert report.result == "cold"


@pytest.mark.anyio
async def test_a_pooled_container_that_died_is_not_handed_out(make_backend: Callable[..., DockerBackend]) -> None:
    async with kept_warm(make_backend(warm_pool=1)) as backend:
        await wait_until(lambda: len(backend.pool) == 1)
        (victim,) = own_containers(backend)
        await anyio.to_thread.run_sync(CLIENT.api.kill, victim)
        await wait_until(lambda: not CLIENT.api.inspect_container(victim)["State"]["Running"])
        session = await backend.start_session()
        assert session.container_id != victim
        assert backend.pool.missed == 1
        report, _ = await run(session, "'alive'")
        assert report.result == "alive"
        await wait_until(lambda: victim not in own_containers(backend))  # recycled: removed from the engine
        await session.aclose()


@pytest.mark.anyio
async def test_a_pooled_container_that_wrote_while_idle_is_not_handed_out(
    make_backend: Callable[..., DockerBackend],
) -> None:
    async with kept_warm(make_backend(warm_pool=1)) as backend:
        await wait_until(lambda: len(backend.pool) == 1)
        (noisy,) = own_containers(backend)
        # Something writes to the container's stderr (the attach stream) while nobody runs a program in it.
        exec_id = CLIENT.api.exec_create(noisy, ["python3", "-c", "open('/proc/1/fd/2', 'w').write('noise')"])
        await anyio.to_thread.run_sync(CLIENT.api.exec_start, exec_id)
        assert CLIENT.api.exec_inspect(exec_id)["ExitCode"] == 0
        ((_, pooled),) = backend.pool._ready
        await wait_until(lambda: pooled.alive and pooled.stderr_bytes > 0)  # the bytes reached its attach socket
        session = await backend.start_session()
        assert session.container_id != noisy
        assert backend.pool.missed == 1
        await wait_until(lambda: noisy not in own_containers(backend))  # recycled: removed from the engine
        await session.aclose()


@pytest.mark.anyio
async def test_an_expired_warm_container_is_replaced_and_removed(make_backend: Callable[..., DockerBackend]) -> None:
    async with kept_warm(make_backend(warm_pool=1, warm_max_age_s=1.0)) as backend:
        await wait_until(lambda: len(backend.pool) == 1)
        ((_, pooled),) = backend.pool._ready  # read with no await since: the pool cannot have recycled it yet
        expired = pooled.container_id
        await wait_until(lambda: backend.pool.recycled >= 1 and len(backend.pool) == 1)
        await wait_until(lambda: expired not in own_containers(backend))
        assert backend.pool.started >= 2
        assert len(own_containers(backend)) <= 2


@pytest.mark.anyio
async def test_a_failing_engine_makes_the_pool_back_off_not_spin(make_backend: Callable[..., DockerBackend]) -> None:
    backend = make_backend(image="ptc-mcp-sandbox:does-not-exist-" + secrets.token_hex(4), warm_pool=2)
    async with kept_warm(backend):
        await wait_until(lambda: backend.pool.failures == 1)
        assert backend.pool.backoff_s >= 1.0
        for _ in range(5):  # takes (each a failing cold start) do not cut the back-off short
            with pytest.raises(SandboxFailure):
                await backend.start_session()
        assert backend.pool.failures == 1
        assert own_containers(backend) == set()


@pytest.mark.anyio
async def test_closing_the_backend_removes_every_container_it_started(
    make_backend: Callable[..., DockerBackend],
) -> None:
    async with kept_warm(make_backend(warm_pool=2)) as backend:
        sessions = [await backend.start_session() for _ in range(2)]
        await wait_until(lambda: len(backend.pool) == 2)
        assert len(own_containers(backend)) == 4
        await backend.aclose()
        assert own_containers(backend) == set()
        assert not any(session.alive for session in sessions)
        with pytest.raises(SandboxFailure):
            await backend.start_session()


@pytest.mark.anyio
async def test_closing_the_backend_during_a_warm_start_removes_that_container_too(
    make_backend: Callable[..., DockerBackend],
) -> None:
    async with kept_warm(make_backend(warm_pool=1)) as backend:
        await wait_until(lambda: backend._launching == 1)  # the pool's first container is being started
        await backend.aclose()
        assert backend._launching == 0, "aclose returned before the container start in flight ended"
        assert own_containers(backend) == set()
        assert len(backend.pool) == 0


@pytest.mark.anyio
async def test_the_config_picks_the_docker_backend(image: str) -> None:
    config = parse_config({"sandbox": {"kind": "docker", "warm_pool": 0, "docker": {"image": image, "pull": "never"}}})
    backend = create_backend(config)
    try:
        assert backend.kind == "docker" and backend.isolated
        session = await backend.start_session()
        report, _ = await run(session, "21 * 2")  # type: ignore[arg-type]
        assert report.result == 42
    finally:
        await backend.aclose()


def test_no_engine_is_sandbox_unavailable_saying_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    config = parse_config({"sandbox": {"kind": "docker"}})
    with pytest.raises(SandboxUnavailableError, match="DOCKER_HOST"):
        create_backend(config)


def test_a_missing_image_is_a_sandbox_failure_without_pulling(make_backend: Callable[..., DockerBackend]) -> None:
    backend = make_backend(image="ptc-mcp-sandbox:does-not-exist-" + secrets.token_hex(4))

    async def start() -> None:
        with pytest.raises(SandboxFailure, match="not on the Docker engine"):
            await backend.start_session()

    anyio.run(start)


DIRECT_CHANNEL_PROBE = """
import os, socket
seen = {"listing": os.listdir("/run/ptc-channel"), "env": "PTC_CHANNEL" in os.environ}
try:
    open("/run/ptc-channel/planted", "w")
except OSError:
    seen["write"] = "refused"
probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    probe.connect("/run/ptc-channel/socket")
    seen["connect"] = "connected"
except OSError as exc:
    seen["connect"] = exc.__class__.__name__
seen["interfaces"] = sorted(name for _, name in socket.if_nameindex())
seen
"""


@pytest.mark.anyio
async def test_a_local_engine_speaks_the_protocol_over_the_direct_channel_and_nothing_can_connect_again(
    make_backend: Callable[..., DockerBackend],
) -> None:
    backend = make_backend()
    assert backend.direct_channel  # this engine is local (the suite's dockerd)
    session = await backend.start_session()
    try:
        assert session._direct is not None
        report, output = await run(
            session, "import os\nos.write(2, b'raw\\n')\nprint('out')\nawait math_tools.add(a=2, b=3)"
        )
        assert report.ok and report.result == 5, report
        assert output.text("stdout") == "out\n" and "raw" in output.text("stderr")
        # fds 1 and 2 are the channel's second connection: the raw output no longer crosses the attach stream
        assert session.stderr_bytes == 0
        report, _ = await run(session, "import os, stat\n[stat.S_ISSOCK(os.fstat(fd).st_mode) for fd in (1, 2)]")
        assert report.result == [True, True], report
        report, _ = await run(session, DIRECT_CHANNEL_PROBE)
        assert report.ok, report
        # The socket is gone (the host removed it after the runtime's two connections), the mount is read-only and
        # empty, the runtime took its variable out of the environment, and a unix socket is still no network.
        assert report.result == {
            "listing": [],
            "env": False,
            "write": "refused",
            "connect": "FileNotFoundError",
            "interfaces": ["lo"],
        }
    finally:
        await session.aclose()


LATE_CHILD = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", '''
import os, time
while not os.path.exists("/tmp/go"):
    time.sleep(0.01)
print("late")
'''])
"""


@pytest.mark.anyio
async def test_raw_output_after_a_run_waits_for_the_next_and_a_session_holding_it_is_not_untouched(
    session: DockerSession,
) -> None:
    report, output = await run(session, LATE_CHILD)
    assert report.ok and output.text("stderr") == "", report
    assert session.untouched
    # Between runs, the child is told to print.
    exec_id = CLIENT.api.exec_create(
        session.container_id, ["python3", "-c", "open('/tmp/go', 'w').close()"], user="65534:65534"
    )
    await anyio.to_thread.run_sync(CLIENT.api.exec_start, exec_id)
    assert CLIENT.api.exec_inspect(exec_id)["ExitCode"] == 0
    with anyio.fail_after(WAIT_S):
        while session.untouched:  # the child's line is waiting on the raw connection
            await anyio.sleep(0.02)
    report, output = await run(session, "1")
    assert report.ok and output.text("stderr") == "late\n", output.chunks


@pytest.mark.anyio
async def test_without_the_direct_channel_everything_runs_over_the_attach_stream(
    make_backend: Callable[..., DockerBackend],
) -> None:
    backend = make_backend(direct_channel=False)
    assert not backend.direct_channel
    session = await backend.start_session()
    try:
        assert session._direct is None
        report, output = await run(session, "import os\nos.write(2, b'raw\\n')\nawait math_tools.add(a=2, b=3)")
        assert report.ok and report.result == 5 and "raw" in output.text("stderr")
    finally:
        await session.aclose()


@pytest.mark.anyio
@pytest.mark.skipif(os.geteuid() != 0, reason="as root the channel's directory is the container uid's alone")
async def test_a_runtime_that_cannot_connect_says_ready_on_the_attach_stream(image: str) -> None:
    settings = parse_docker_settings({"image": image, "pull": "never"})
    # The container runs as another uid than the one the channel's directory (0700) was handed to.
    other_user = parse_docker_settings({"image": image, "pull": "never", "user": "65533:65533"})
    spec = container_spec(other_user, SandboxLimits(), owner_labels(f"test-{secrets.token_hex(4)}"))
    launched = await anyio.to_thread.run_sync(lambda: launch(CLIENT.api, spec, settings, {}, direct=True))
    try:
        assert launched.channel is None
        assert launched.ready.python
    finally:
        launched.handle.close()
        remove(CLIENT.api, launched.container_id)

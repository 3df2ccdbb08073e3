"""The launch layer of the ``process`` backend, with real interpreters, real bubblewrap and real rlimits.

Network rule: nothing here sends a packet anywhere but loopback. The one outside ``connect()`` runs only inside a
sandbox that has first checked, in the same program, that it has no route but loopback's own.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from ptc_mcp.errors import SandboxUnavailableError
from ptc_mcp.sandboxes.base import SandboxLimits
from ptc_mcp.sandboxes.process import isolation
from ptc_mcp.sandboxes.process.isolation import (
    SESSION_UIDS,
    LaunchSpec,
    bubblewrap_status,
    cleanup_launch,
    kill_process_tree,
    plan_launch,
    processes_of_user,
    reap_stale_scratch_dirs,
)

ROOT = os.geteuid() == 0
BWRAP_OK, BWRAP_REASON = bubblewrap_status()
needs_bwrap = [pytest.mark.bubblewrap, pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap unusable: {BWRAP_REASON}")]
needs_root = pytest.mark.skipif(not ROOT, reason="per-session uids need the server to run as root")
BOTH_MODES = pytest.mark.parametrize(
    "bwrap", [pytest.param(True, id="bubblewrap", marks=needs_bwrap), pytest.param(False, id="plain")]
)
WAIT_S = 30.0
MARKER = "PTC_TEST_SECRET_MARKER"


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """A private scratch root per test (others run tests in this tree at the same time)."""
    root = Path(tempfile.mkdtemp(prefix="ptc-test-isolation-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def plan(code: str, scratch_root: Path, *, bwrap: bool, limits: SandboxLimits | None = None) -> LaunchSpec:
    return plan_launch(
        ["python3", "-I", "-u", "-c", code], limits or SandboxLimits(), use_bubblewrap=bwrap, scratch_root=scratch_root
    )


def run(
    code: str, scratch_root: Path, *, bwrap: bool, limits: SandboxLimits | None = None
) -> tuple[LaunchSpec, subprocess.CompletedProcess[str]]:
    """Run ``code`` until its main process exits, kill whatever it left behind, and clean up.

    Output goes to files, not pipes, so that processes the program leaves behind cannot hold the wait open.
    """
    spec = plan(code, scratch_root, bwrap=bwrap, limits=limits)
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(spec.argv, **spec.process_kwargs(), stdout=out, stderr=err)
            try:
                proc.wait(timeout=WAIT_S)
            finally:
                kill_process_tree(proc.pid, spec)
                proc.wait(timeout=WAIT_S)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        return spec, subprocess.CompletedProcess(spec.argv, proc.returncode, stdout, stderr)
    finally:
        cleanup_launch(spec)


def last_json(done: subprocess.CompletedProcess[str]) -> object:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def proc_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def read_line(proc: subprocess.Popen[str]) -> str:
    """One line from the child's stdout, bounded in time."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=WAIT_S), "the sandbox printed nothing in time"
    return proc.stdout.readline()


# --- environment, identity ---------------------------------------------------------------------------------------


def test_bubblewrap_status_says_why() -> None:
    usable, reason = bubblewrap_status()
    assert isinstance(usable, bool) and reason
    if shutil.which("bwrap") is None:
        assert not usable and "bubblewrap" in reason


@BOTH_MODES
def test_environment_is_clean(bwrap: bool, scratch_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MARKER, "leaked")
    spec, done = run("import json, os; print(json.dumps(dict(os.environ)))", scratch_root, bwrap=bwrap)
    env = last_json(done)
    assert isinstance(env, dict)
    assert MARKER not in env and "leaked" not in json.dumps(env)
    assert set(env) <= {*spec.env, "PWD"}
    assert env["LANG"] == "C.UTF-8" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert spec.isolated is bwrap


@BOTH_MODES
def test_sandbox_is_not_root_on_the_host_and_has_no_capabilities(bwrap: bool, scratch_root: Path) -> None:
    code = (
        "import os, sys; print(os.getuid(), os.getpgid(0) == os.getpid() or os.getsid(0), flush=True); sys.stdin.read()"
    )
    spec = plan(code, scratch_root, bwrap=bwrap)
    try:
        with subprocess.Popen(
            spec.argv, **spec.process_kwargs(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as proc:
            try:
                inside_uid = int(read_line(proc).split()[0])
                pids = processes_of_user(spec.user) if spec.user is not None else [proc.pid]
                assert pids
                for pid in pids:
                    status = proc_status(pid)
                    host_uids = [int(uid) for uid in status["Uid"].split()]
                    assert 0 not in host_uids
                    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
                    assert status["NoNewPrivs"] == "1"
                if ROOT:
                    assert spec.user in SESSION_UIDS and host_uids[0] == spec.user
                assert inside_uid != 0
                assert os.getsid(proc.pid) == proc.pid  # its own session and process group
            finally:
                kill_process_tree(proc.pid, spec)
                proc.wait(timeout=WAIT_S)
    finally:
        cleanup_launch(spec)


def test_requiring_bubblewrap_when_unusable_names_the_reason(
    scratch_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(isolation, "_detect_bubblewrap", lambda: (None, "bwrap not on PATH: install bubblewrap"))
    with pytest.raises(SandboxUnavailableError, match="bubblewrap"):
        plan("pass", scratch_root, bwrap=True)
    spec = plan_launch(["python3", "-c", "pass"], SandboxLimits(), scratch_root=scratch_root)
    try:
        assert not spec.isolated and "NOT isolated" in spec.description
    finally:
        cleanup_launch(spec)


@pytest.mark.anyio
async def test_anyio_open_process_accepts_the_spec(scratch_root: Path) -> None:
    spec = plan_launch(["python3", "-I", "-c", "print(input()[::-1])"], SandboxLimits(), scratch_root=scratch_root)
    try:
        with anyio.fail_after(WAIT_S):
            async with await anyio.open_process(spec.argv, **spec.process_kwargs()) as proc:
                assert proc.stdin is not None and proc.stdout is not None
                await proc.stdin.send(b"olleh\n")
                assert (await proc.stdout.receive()).strip() == b"hello"
                assert await proc.wait() == 0
    finally:
        cleanup_launch(spec)


# --- network -------------------------------------------------------------------------------------------------------

NETWORK_PROBE = """
import errno, json, socket
interfaces = [line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]]
v4 = open("/proc/net/route").read().splitlines()[1:]
v6 = [line.split() for line in open("/proc/net/ipv6_route").read().splitlines()]
RTF_REJECT = 0x200
v6_usable = [r for r in v6 if r[9] != "lo" or not (int(r[8], 16) & RTF_REJECT or r[0] == "0" * 31 + "1")]
result = {"interfaces": interfaces, "v4": v4, "v6_usable": v6_usable, "connect": None}
if interfaces == ["lo"] and not v4 and not v6_usable:  # only now may we try, and no packet can leave
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("169.254.169.254", 80))
        result["connect"] = "connected"
    except OSError as exc:
        result["connect"] = exc.errno
print(json.dumps(result))
"""


@pytest.mark.bubblewrap
@pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap unusable: {BWRAP_REASON}")
def test_sandbox_has_only_loopback_and_no_route(scratch_root: Path) -> None:
    _, done = run(NETWORK_PROBE, scratch_root, bwrap=True)
    result = last_json(done)
    assert isinstance(result, dict)
    assert result["interfaces"] == ["lo"]
    assert result["v4"] == [] and result["v6_usable"] == []
    assert result["connect"] == errno.ENETUNREACH


@pytest.mark.bubblewrap
@pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap unusable: {BWRAP_REASON}")
def test_a_listener_on_the_host_loopback_is_unreachable(scratch_root: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = (
            "import json, socket\ns = socket.socket(); s.settimeout(2)\n"
            f"try:\n    s.connect(('127.0.0.1', {port})); r = 'connected'\n"
            "except OSError as exc:\n    r = exc.errno\nprint(json.dumps(r))"
        )
        _, done = run(code, scratch_root, bwrap=True)
        assert last_json(done) == errno.ECONNREFUSED
        with pytest.raises(BlockingIOError):
            listener.accept()


@BOTH_MODES
def test_raw_and_packet_sockets_are_not_permitted(bwrap: bool, scratch_root: Path) -> None:
    if not bwrap and not ROOT:
        pytest.skip("without bubblewrap the server's own uid decides; only a root server drops to a session uid")
    code = """
import json, socket
out = []
for family, kind, proto in [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                            (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
                            (socket.AF_PACKET, socket.SOCK_RAW, 0)]:
    try:
        socket.socket(family, kind, proto).close()
        out.append("created")
    except PermissionError:
        out.append("denied")
print(json.dumps(out))
"""
    _, done = run(code, scratch_root, bwrap=bwrap)
    assert last_json(done) == ["denied", "denied", "denied"]


# --- filesystem ----------------------------------------------------------------------------------------------------


@pytest.mark.bubblewrap
@pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap unusable: {BWRAP_REASON}")
def test_host_files_are_not_visible(scratch_root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    paths = ["/root", "/work", sys.prefix, str(secret), str(tmp_path), "/home", "/etc/shadow", "/etc/passwd", "/var"]
    code = f"import json, os; print(json.dumps([os.path.exists(p) for p in {paths!r}]))"
    _, done = run(code, scratch_root, bwrap=True)
    assert last_json(done) == [False] * len(paths)


@needs_root
def test_plain_process_cannot_read_private_host_files(scratch_root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    code = f"""
import json
out = []
for p in ["/root/.bashrc", {str(secret)!r}, "/etc/shadow"]:
    try:
        open(p).read(); out.append("read")
    except OSError as exc:
        out.append(type(exc).__name__)
print(json.dumps(out))
"""
    _, done = run(code, scratch_root, bwrap=False)
    assert last_json(done) == ["PermissionError"] * 3


WRITE_PROBE = """
import errno, json, os
out = {}
for p in ["/usr/ptc-probe", "/etc/ptc-probe", "/ptc-probe", "/dev/ptc-probe"]:
    try:
        open(p, "w").close(); out[p] = "written"
    except OSError as exc:
        out[p] = exc.errno
total = 0
chunk = b"x" * (1024 * 1024)
try:
    with open(os.path.join(os.environ["TMPDIR"], "fill"), "wb") as f:
        for _ in range(1024):
            f.write(chunk); f.flush(); total += len(chunk)
except OSError as exc:
    out["fill_errno"] = exc.errno
out["written_mb"] = total // (1024 * 1024)
print(json.dumps(out))
"""


@pytest.mark.bubblewrap
@pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap unusable: {BWRAP_REASON}")
def test_system_is_read_only_and_tmp_is_capped(scratch_root: Path) -> None:
    limits = SandboxLimits(scratch_mb=8, max_file_size_mb=64)
    _, done = run(WRITE_PROBE, scratch_root, bwrap=True, limits=limits)
    out = last_json(done)
    assert isinstance(out, dict)
    assert out["/usr/ptc-probe"] == errno.EROFS and out["/ptc-probe"] == errno.EROFS
    assert out["/etc/ptc-probe"] == errno.EROFS and out["/dev/ptc-probe"] == errno.EROFS
    assert out["fill_errno"] == errno.ENOSPC
    assert 4 <= out["written_mb"] <= 8


@BOTH_MODES
def test_file_size_limit_stops_a_large_file(bwrap: bool, scratch_root: Path) -> None:
    limits = SandboxLimits(scratch_mb=64, max_file_size_mb=2)
    _, done = run(WRITE_PROBE, scratch_root, bwrap=bwrap, limits=limits)
    out = last_json(done)
    assert isinstance(out, dict)
    assert out["fill_errno"] == errno.EFBIG and out["written_mb"] == 2
    if ROOT or bwrap:
        assert out["/usr/ptc-probe"] in (errno.EROFS, errno.EACCES)


# --- resource limits -----------------------------------------------------------------------------------------------


@BOTH_MODES
def test_huge_allocation_raises_memory_error(bwrap: bool, scratch_root: Path) -> None:
    code = (
        "import json\ntry:\n    b = bytearray(8 * 1024**3); r = 'allocated'\n"
        "except MemoryError:\n    r = 'MemoryError'\nprint(json.dumps(r))"
    )
    _, done = run(code, scratch_root, bwrap=bwrap, limits=SandboxLimits(memory_mb=256))
    assert last_json(done) == "MemoryError"


FORK_BOMB = """
import json, os, time
children = 0
error = None
for _ in range(200):
    try:
        pid = os.fork()
    except OSError as exc:
        error = exc.errno
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children += 1
print(json.dumps({"children": children, "errno": error}), flush=True)
"""


@BOTH_MODES
def test_fork_bomb_is_stopped_by_the_process_limit(bwrap: bool, scratch_root: Path) -> None:
    if not bwrap and not ROOT:
        pytest.skip("without bubblewrap a non-root server shares RLIMIT_NPROC with its own uid")
    spec, done = run(FORK_BOMB, scratch_root, bwrap=bwrap, limits=SandboxLimits(max_processes=16))
    out = last_json(done)
    assert out == {"children": 15, "errno": errno.EAGAIN}
    if spec.user is not None:
        assert processes_of_user(spec.user) == []


@BOTH_MODES
def test_opening_files_until_the_limit_raises_emfile(bwrap: bool, scratch_root: Path) -> None:
    code = """
import json
files = []
try:
    for _ in range(100000):
        files.append(open("/dev/null"))
    r = None
except OSError as exc:
    r = exc.errno
print(json.dumps({"errno": r, "opened": len(files)}))
"""
    _, done = run(code, scratch_root, bwrap=bwrap, limits=SandboxLimits(max_open_files=64))
    out = last_json(done)
    assert isinstance(out, dict)
    assert out["errno"] == errno.EMFILE and 50 <= out["opened"] < 64


@BOTH_MODES
def test_cpu_limit_kills_a_busy_loop(bwrap: bool, scratch_root: Path) -> None:
    started = time.monotonic()
    _, done = run("while True: pass", scratch_root, bwrap=bwrap, limits=SandboxLimits(cpu_seconds=1))
    assert time.monotonic() - started < 15
    # bwrap's reaper exits with the child's status when it died of a signal: 128 + SIGXCPU.
    assert done.returncode in (-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU, 128 + signal.SIGKILL)


@pytest.mark.bubblewrap
@pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap unusable: {BWRAP_REASON}")
def test_unshare_mount_and_mknod_are_not_permitted(scratch_root: Path) -> None:
    code = """
import json, os, stat, subprocess
out = {}
for name, argv in [("unshare", ["unshare", "--user", "true"]), ("mount", ["mount", "-t", "tmpfs", "x", "/tmp"])]:
    out[name] = subprocess.run(argv, capture_output=True).returncode
try:
    os.mknod("/tmp/mem", stat.S_IFCHR | 0o600, os.makedev(1, 1)); out["mknod"] = 0
except OSError as exc:
    out["mknod"] = exc.errno
out["devmem"] = os.path.exists("/dev/mem")
print(json.dumps(out))
"""
    _, done = run(code, scratch_root, bwrap=True)
    out = last_json(done)
    assert isinstance(out, dict)
    assert out["unshare"] != 0 and out["mount"] != 0
    assert out["mknod"] == errno.EPERM and out["devmem"] is False


# --- ending --------------------------------------------------------------------------------------------------------

STRAGGLERS = """
import os, signal, time
for _ in range(3):
    if os.fork() == 0:
        os.setsid()  # try to leave the process group
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
        os._exit(0)
open(os.path.join(os.environ["HOME"], "left-behind"), "w").write("x")
print("ready", flush=True)
time.sleep(600)
"""


@BOTH_MODES
def test_killing_on_timeout_leaves_no_process_and_no_scratch(bwrap: bool, scratch_root: Path) -> None:
    spec = plan(STRAGGLERS, scratch_root, bwrap=bwrap)
    try:
        with subprocess.Popen(spec.argv, **spec.process_kwargs(), stdout=subprocess.PIPE, text=True) as proc:
            try:
                assert read_line(proc).strip() == "ready"
                if spec.user is not None:
                    assert len(processes_of_user(spec.user)) >= 4
            finally:
                kill_process_tree(proc.pid, spec)
                proc.wait(timeout=WAIT_S)
        if spec.user is not None:
            assert processes_of_user(spec.user) == []
        assert spec.scratch_dir.exists()
    finally:
        cleanup_launch(spec)
    assert not spec.scratch_dir.exists()
    cleanup_launch(spec)  # idempotent


@needs_root
def test_reaping_removes_stale_scratch_dirs_and_their_processes(scratch_root: Path) -> None:
    with subprocess.Popen(["true"]) as gone:
        gone.wait(timeout=WAIT_S)
    uid = SESSION_UIDS[-1]
    stale = scratch_root / f"ptc-mcp-{gone.pid}.1-u{uid}-abc123"
    stale.mkdir()
    (stale / "sub").mkdir()
    (stale / "sub" / "file").write_text("x")
    os.chmod(stale / "sub", 0)
    mine = plan("pass", scratch_root, bwrap=False)
    try:
        with subprocess.Popen(["sleep", "600"], user=uid, group=uid, extra_groups=[], cwd="/") as orphan:
            try:
                assert processes_of_user(uid) == [orphan.pid]
                removed = reap_stale_scratch_dirs(scratch_root)
                assert removed == [stale]
                assert orphan.wait(timeout=WAIT_S) == -signal.SIGKILL
            finally:
                orphan.kill()
        assert not stale.exists() and mine.scratch_dir.exists()
    finally:
        cleanup_launch(mine)


def test_killing_refuses_uids_outside_the_session_range() -> None:
    with pytest.raises(ValueError):
        isolation.kill_user_processes(0)
    with pytest.raises(ValueError):
        isolation.kill_user_processes(os.getuid())

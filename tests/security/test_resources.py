"""SECURITY.md, "Resource exhaustion": every bound holds, ends the run with its typed error, and the server goes on.

Each case runs once per isolating backend (``secured``), through the real MCP server; afterwards the fixture checks
that no process, container or scratch directory of the case is left.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import tempfile
import time

import pytest

from tests.security.conftest import Secured, error_type, my_processes, not_under, only

pytestmark = pytest.mark.anyio

TIMEOUT_S = 1.5
GRACE_S = 4.0
"""How far past its deadline a run may end, including killing everything it started (docker and agentcore
need a round trip to their engine)."""


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("while True: pass", id="busy-loop"),
        pytest.param("import time\ntime.sleep(10**6)", id="sleep"),
        pytest.param(
            # Programs run on a worker thread, so signal.signal() is refused; libc's signal() is not.
            "import ctypes, signal\nctypes.CDLL(None).signal(int(signal.SIGTERM), 1)\nwhile True: pass",
            id="ignores-sigterm",
        ),
        pytest.param(
            "import subprocess, sys\n"
            "child = 'import os, signal; os.setsid(); signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n'\n"
            "child += 'while True: pass'\n"
            "subprocess.Popen([sys.executable, '-c', child])\nwhile True: pass",
            id="escaped-child-ignoring-sigterm",
        ),
    ],
)
async def test_a_run_past_its_deadline_is_a_timeout_and_everything_it_started_is_killed(
    secured: Secured, code: str
) -> None:
    started = time.monotonic()
    result = await secured.run(code, timeout_s=TIMEOUT_S)
    elapsed = time.monotonic() - started
    assert error_type(result) == "timeout"
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + GRACE_S
    await secured.assert_serving()


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("blob = bytearray(8 * 1024**3)", id="8-gib-at-once"),
        pytest.param(
            "import time\nhoard = []\nwhile True:\n    hoard.append(bytearray(4 * 1024 * 1024))\n    time.sleep(0.001)",
            id="slowly-growing-list",
        ),
    ],
)
async def test_memory_exhaustion_is_a_memory_limit_and_the_servers_memory_is_unchanged(
    secured: Secured, code: str
) -> None:
    rss_before = _rss_mb()
    result = await secured.run(code)
    assert error_type(result) == "memory_limit", result
    # ru_maxrss is the peak of this process (the server): the program's memory was never charged to it.
    assert _rss_mb() - rss_before < 64
    await secured.assert_serving()


FORK_BOMB = """
import os, time
while True:
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
"""

POOL_GROWTH = """
import multiprocessing
pool = multiprocessing.get_context("fork").Pool(500)
"""

THREADS = """
import threading, time
for _ in range(10_000):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
"""


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(FORK_BOMB, id="fork-bomb"),
        pytest.param(POOL_GROWTH, id="multiprocessing-pool"),
        pytest.param(THREADS, id="10000-threads"),
    ],
)
async def test_process_and_thread_growth_is_bounded_and_the_host_process_count_is_restored(
    secured: Secured, code: str
) -> None:
    await secured.run("'warm'")  # the session's sandbox exists before the count
    before = len(my_processes())
    result = await secured.run(code)
    assert error_type(result) == "process_limit", result
    # The sandbox that hit the bound is discarded with every process in it; at most a fresh interpreter (or a
    # warm one that the pool started meanwhile) may exist now.
    assert len(my_processes()) <= before + 6
    await secured.assert_serving()


DISK_FILL = """
import os
written = 0
chunk = b"x" * (1024 * 1024)
try:
    for i in range(10 * 1024):  # 10 GB in files of 16 MB
        with open(f"/tmp/fill-{i // 16}", "ab") as handle:
            handle.write(chunk)
        written += len(chunk)
finally:
    print(f"wrote {written // (1024 * 1024)} MB", flush=True)
"""


@not_under(
    "srt",
    reason="srt's /tmp, /dev and /dev/shm are tmpfs mounts without a size cap (bubblewrap on Linux): their total is "
    "bounded by host memory, not by sandbox.scratch_mb, which caps each file only (RLIMIT_FSIZE); the case is not "
    "run, so that it does not fill this machine's memory",
)
async def test_filling_tmp_is_a_disk_limit_the_host_disk_is_untouched_and_the_space_is_freed(
    secured: Secured,
) -> None:
    host_used = shutil.disk_usage(tempfile.gettempdir()).used
    result = await secured.run(DISK_FILL)
    assert error_type(result) == "disk_limit", result
    written_mb = int(result["stdout"].split()[1])
    assert 0 < written_mb <= 1024
    assert shutil.disk_usage(tempfile.gettempdir()).used - host_used < 256 * 1024 * 1024
    after = await secured.run("import os\nsorted(name for name in os.listdir('/tmp') if name.startswith('fill-'))")
    assert after["status"] == "ok", after
    assert after["result"] == []  # a fresh sandbox: the space is free again
    await secured.assert_serving()


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("while True: print('x' * 1000)", id="stdout"),
        pytest.param("import sys\nwhile True: sys.stderr.write('y' * 1000 + '\\n')", id="stderr"),
        pytest.param("import os\nwhile True: os.write(1, b'z' * 65536)", id="raw-fd"),
        # after a call the run answers calls in a task group of its own: the flood must end that run too
        pytest.param("tools.search('x')\nimport os\nwhile True: os.write(1, b'z' * 65536)", id="raw-fd-after-a-call"),
        pytest.param(
            "import subprocess, sys\n"
            "subprocess.run([sys.executable, '-c', 'import os\\nwhile True: os.write(2, b\"c\" * 65536)'])",
            id="child-process",
        ),
    ],
)
async def test_printing_forever_is_capped_with_a_marker_and_stopped_soon(secured: Secured, code: str) -> None:
    cap = secured.app.config.limits.max_output_bytes
    rss_before = _rss_mb()
    started = time.monotonic()
    result = await secured.run(code)
    assert time.monotonic() - started < 20
    if secured.kind == "agentcore" and "os.write" in code:
        # Floods of the real fds reach executeCode's own output and break the step: the run still ends, typed.
        assert error_type(result) == "sandbox_failure", result
        await secured.assert_serving()
        return
    assert error_type(result) == "output_limit", result
    assert result["output_truncated"]
    assert len(result["stdout"].encode()) + len(result["stderr"].encode()) <= cap + 200  # + the marker
    assert "output truncated" in result["stdout"]
    assert _rss_mb() - rss_before < 64  # read as a stream: never held in memory
    await secured.assert_serving()


HOSTILE_OUTPUT = r"""
import os, sys
print("nul:\x00 esc:\x1b[31mred\x1b[0m clear:\x1b[2J bell:\x07 c1:\x9b surrogate:\ud800 end")
sys.stderr.write("err-surrogate:\udfff\n")
sys.stdout.flush()
os.write(1, b"raw:\xff\xfe\x00\x1b]0;title\x07\xc3\n")
"lone \ud834 surrogate result"
"""


async def test_binary_nuls_escapes_and_lone_surrogates_come_back_as_valid_utf8_text(secured: Secured) -> None:
    result = await secured.call(HOSTILE_OUTPUT)
    structured = result.structured_content
    assert structured is not None and structured["status"] == "ok", structured
    texts = [structured["stdout"], structured["stderr"], structured["result_repr"], result.content[0].text]
    for text in texts:
        text.encode("utf-8")  # no lone surrogates
        assert "\x1b" not in text and "\x00" not in text and "\x07" not in text and "\x9b" not in text
    assert "end" in structured["stdout"]
    if secured.kind != "agentcore":  # there, writes to the real fds go to executeCode's output, not the run's
        assert "raw:" in structured["stderr"]
    await secured.assert_serving()


OPEN_UNTIL_REFUSED = """
import socket, tempfile
held = []
try:
    while len(held) < 100_000:
        held.append(open("/dev/null") if len(held) % 2 else socket.socket(socket.AF_INET, socket.SOCK_STREAM))
except OSError as exc:
    refused = (exc.errno, len(held))
refused
"""


async def test_opening_files_and_sockets_until_the_limit_is_an_oserror_inside_and_the_host_is_unaffected(
    secured: Secured,
) -> None:
    fds_before = _open_fds()
    result = await secured.run(OPEN_UNTIL_REFUSED)
    assert result["status"] == "ok", result
    code, held = result["result"]
    assert code == errno.EMFILE
    assert 0 < held < 100_000
    assert _open_fds() <= fds_before + 8
    await secured.assert_serving()


@only(
    "process", "srt", "docker", reason="agentcore's interpreter is AWS's: its limits are the service's, not ptc-mcp's"
)
async def test_the_sandbox_limits_are_in_force_inside(secured: Secured) -> None:
    """The bounds the other cases rely on, read from inside: processes, files, no core dumps, not root."""
    result = await secured.run(
        "import os, resource\n"
        "{'nofile': resource.getrlimit(resource.RLIMIT_NOFILE)[0], 'uid': os.getuid(), 'euid': os.geteuid(),"
        " 'status': {k: v.strip() for k, v in (l.split(':', 1) for l in open('/proc/self/status'))"
        " if k in ('NoNewPrivs', 'CapEff', 'CapPrm', 'CapInh', 'CapAmb', 'CapBnd')}}"
    )
    assert result["status"] == "ok", result
    value = result["result"]
    assert value["uid"] != 0 and value["euid"] != 0
    assert value["nofile"] <= 1024
    status = value["status"]
    assert status["NoNewPrivs"] == "1"
    assert {status[key] for key in ("CapEff", "CapPrm", "CapInh", "CapAmb")} == {"0000000000000000"}

"""How the ``process`` backend launches an interpreter: environment, uid, limits, scratch space, bubblewrap.

``plan_launch`` decides everything and returns a ``LaunchSpec``; the backend passes ``spec.argv`` and
``spec.process_kwargs()`` to ``anyio.open_process`` and, when the session ends, calls ``kill_process_tree`` and
then ``cleanup_launch``. Everything here blocks briefly (``/proc`` scans, ``mkdir``, a one-off bwrap probe): call
it through ``anyio.to_thread.run_sync``.

Every launch gets a clean environment, its own session and process group, rlimits (see ``limits``), ``no_new_privs``
and a private scratch directory. When the server runs as root the launch drops to a uid/gid of its own, taken from
``SESSION_UIDS``: the sandbox is never root on the host, ``RLIMIT_NPROC`` counts this session only, and "kill every
process of that uid" is an exact way to end everything the session started. With bubblewrap (see ``bubblewrap``)
it also gets namespaces, no network, a read-only system and capped tmpfs mounts, and ``isolated`` is true.
With a ``LaunchWrapper`` (the ``srt`` backend's) the same launch runs inside that sandbox instead of bubblewrap.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import signal
import stat
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ptc_mcp.errors import SandboxUnavailableError
from ptc_mcp.sandboxes.base import SandboxLimits
from ptc_mcp.sandboxes.process.bubblewrap import SAFE_PATH, Bubblewrap, bwrap_argv, find_bubblewrap, probe
from ptc_mcp.sandboxes.process.limits import resource_limits, wrap_argv

__all__ = [
    "SESSION_UIDS",
    "LaunchSpec",
    "LaunchWrapper",
    "bubblewrap_status",
    "cleanup_launch",
    "default_scratch_root",
    "kill_process_tree",
    "kill_user_processes",
    "plan_launch",
    "processes_of_user",
    "reap_stale_scratch_dirs",
]

SESSION_UIDS = range(0x7000_0000, 0x7000_0000 + 65536)
"""Host uids/gids for sessions when the server is root: a block that systemd and the usual /etc/subuid
allocations leave unused (0x70000000 lies between the nspawn container range and the 2^31 boundary)."""

_SCRATCH_NAME = re.compile(r"^ptc-mcp-(?P<pid>\d+)\.(?P<start>\d+)-(?:u(?P<uid>\d+)|x)-[0-9a-f]+$")
_SYSTEM_PREFIXES = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")
_KILL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one sandboxed interpreter, and to clean up after it."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    user: int | None
    """Host uid to run as (``None``: keep the server's, which is then not root)."""
    group: int | None
    scratch_dir: Path
    """Per-session host directory: cwd/HOME/TMPDIR without bubblewrap; removed by ``cleanup_launch``."""
    isolated: bool
    """True only inside bubblewrap (namespaces, no network, read-only system)."""
    description: str
    session_user: bool = False
    """``user`` belongs to this launch alone, so every process with that uid belongs to it."""
    umask: int = 0o077

    def process_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``anyio.open_process`` (also valid for ``subprocess.Popen``)."""
        return {
            "cwd": self.cwd,
            "env": dict(self.env),
            "start_new_session": True,
            "user": self.user,
            "group": self.group,
            "extra_groups": [] if self.user is not None else None,
            "umask": self.umask,
        }

    def kill(self, pid: int) -> None:
        """``kill_process_tree(pid, self)``: SIGKILL everything this launch started (blocks a few ms)."""
        kill_process_tree(pid, self)

    def cleanup(self) -> None:
        """``cleanup_launch(self)``: kill leftovers, remove the scratch directory, free the uid. Idempotent."""
        cleanup_launch(self)


# --- bubblewrap detection -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _detect_bubblewrap() -> tuple[Bubblewrap | None, str]:
    bwrap = find_bubblewrap()
    if bwrap is None:
        return None, "bubblewrap not installed (apt-get install bubblewrap)"
    true = shutil.which("true", path=SAFE_PATH) or "/bin/true"
    user = _allocate_uid() if os.geteuid() == 0 else None
    try:
        reason = probe(bwrap, user=user, group=user, command=[true])
    finally:
        if user is not None:
            _release_uid(user)
    if reason is not None:
        return None, f"bubblewrap {bwrap.version} cannot create a sandbox here: {reason}"
    caps = "" if bwrap.has_size else " (no --size: /tmp is a host scratch directory capped per file only)"
    return bwrap, f"bubblewrap {bwrap.version} at {bwrap.path}{caps}"


def bubblewrap_status() -> tuple[bool, str]:
    """Whether bubblewrap can sandbox here, and why not (or which one). Tried for real once, then cached."""
    bwrap, reason = _detect_bubblewrap()
    return bwrap is not None, reason


# --- session uids ---------------------------------------------------------------------------------------------

_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()


def _allocate_uid(scratch_root: Path | None = None) -> int:
    """A session uid no live process and no scratch directory in ``scratch_root`` uses.

    Skipping the uids of leftover directories matters: reaping one kills every process of its uid.
    """
    busy = {uid for uid in _uids_of_all_processes() if uid in SESSION_UIDS}
    with suppress(OSError):
        for entry in os.listdir(scratch_root or default_scratch_root()):
            match = _SCRATCH_NAME.match(entry)
            if match and match["uid"]:
                busy.add(int(match["uid"]))
    with _uid_lock:
        for _ in range(1000):
            uid = SESSION_UIDS[secrets.randbelow(len(SESSION_UIDS))]
            if uid not in busy and uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid
    raise SandboxUnavailableError("no free session uid left")


def _release_uid(uid: int) -> None:
    with _uid_lock:
        _uids_in_use.discard(uid)


def _proc_status(pid: str) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _live_processes() -> list[tuple[int, dict[str, str]]]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            status = _proc_status(entry)
            if status and not status.get("State", "").startswith(("Z", "X")):
                found.append((int(entry), status))
    return found


def _uids_of_all_processes() -> set[int]:
    uids: set[int] = set()
    for _, status in _live_processes():
        uids.update(int(uid) for uid in status.get("Uid", "").split()[:3])
    return uids


def processes_of_user(uid: int) -> list[int]:
    """Pids of live (non-zombie) processes whose real, effective or saved uid is ``uid``."""
    return [pid for pid, status in _live_processes() if str(uid) in status.get("Uid", "").split()[:3]]


def _tasks_of_real_user(uid: int) -> int:
    return sum(
        int(status.get("Threads", "1"))
        for _, status in _live_processes()
        if status.get("Uid", "").split()[:1] == [str(uid)]
    )


# --- interpreter ----------------------------------------------------------------------------------------------


def _reachable_by_others(path: str) -> bool:
    """Whether a uid with no groups can reach and execute ``path`` (every ancestor searchable by others)."""
    current = Path(path)
    try:
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return False
        return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in current.parents)
    except OSError:
        return False


def _prefix_dirs(real: str) -> list[str] | None:
    """Host directories to bind for an interpreter at ``real``: none under ``/usr``; ``None`` if unsafe."""
    if real.startswith(_SYSTEM_PREFIXES):
        return []
    prefix = Path(real).parent.parent
    home = Path.home()
    if prefix == Path("/") or prefix == home or prefix in home.parents:
        return None
    return [str(prefix)]


def _choose_interpreter(name: str, *, other_user: bool) -> tuple[str, list[str], str]:
    """(absolute interpreter path, directories to bind for it, note) for ``name``, else the system ``python3``."""
    candidates = [name] if name == "python3" else [name, "python3"]
    for candidate in candidates:
        found = candidate if os.path.isabs(candidate) else shutil.which(candidate, path=SAFE_PATH)
        if found is None:
            continue
        real = os.path.realpath(found)
        dirs = _prefix_dirs(real)
        if not os.access(real, os.X_OK) or dirs is None:
            continue
        if other_user and not _reachable_by_others(real):
            continue
        note = "" if candidate == name else f" ({name} is not reachable by the sandbox uid, using {real})"
        return real, dirs, note
    raise SandboxUnavailableError(
        f"no Python interpreter the sandbox can run: {name} is not reachable by an unprivileged uid"
        f" and there is no python3 in {SAFE_PATH} (install python3)"
    )


# --- scratch directories --------------------------------------------------------------------------------------


def default_scratch_root() -> Path:
    """``<system temp dir>/ptc-mcp``: where session scratch directories live unless configured otherwise."""
    return Path(tempfile.gettempdir()) / "ptc-mcp"


def _start_time(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()[19]


def _prepare_root(root: Path) -> None:
    with suppress(FileExistsError):
        root.mkdir(mode=0o711, parents=True)
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise SandboxUnavailableError(
            f"unsafe scratch root {root}: it must be a real directory owned by uid {os.geteuid()}"
            " and writable by nobody else"
        )
    # Session uids must be able to reach their own directory; nobody may list the others.
    os.chmod(root, 0o711)


def _make_scratch_dir(root: Path, uid: int | None) -> Path:
    _prepare_root(root)
    owner = f"u{uid}" if uid is not None else "x"
    path = root / f"ptc-mcp-{os.getpid()}.{_start_time(os.getpid())}-{owner}-{secrets.token_hex(6)}"
    path.mkdir(mode=0o700)
    if uid is not None:
        os.chown(path, uid, uid)
    return path


def _remove_tree(path: Path) -> None:
    def retry_writable(function: Any, failed: str, _exc: Any) -> None:
        # A program may leave directories without write/search permission for their owner.
        with suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
            os.chmod(failed, 0o700)
        with suppress(OSError):
            function(failed)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=retry_writable)  # onexc is 3.12+
        with suppress(FileNotFoundError):
            shutil.rmtree(path)


# --- planning -------------------------------------------------------------------------------------------------


class LaunchWrapper(Protocol):
    """Another sandbox around the interpreter (``srt``), used by ``plan_launch`` instead of bubblewrap."""

    def process_limit(self, limits: SandboxLimits) -> int:
        """``RLIMIT_NPROC`` for the interpreter inside the wrapper (what counts against it depends on the wrapper)."""
        ...

    def wrap(self, command: list[str], scratch: Path, user: int | None) -> tuple[list[str], str]:
        """(argv that runs ``command`` inside the wrapper, a description); may write per-session files to
        ``scratch``, which is the sandbox's only writable host directory and its cwd, HOME and TMPDIR."""
        ...

    def search_path(self) -> str:
        """``PATH`` for the launch: the wrapper's own programs must be found on it."""
        ...


def plan_launch(
    python_argv: list[str],
    limits: SandboxLimits,
    *,
    use_bubblewrap: bool | None = None,
    scratch_root: Path | None = None,
    wrapper: LaunchWrapper | None = None,
) -> LaunchSpec:
    """Decide how to start ``python_argv`` (e.g. ``["python3", "-I", "-u", "-c", BOOTSTRAP]``) in a sandbox.

    ``use_bubblewrap``: ``None`` uses it when usable, ``True`` requires it (``SandboxUnavailableError`` naming the
    reason otherwise), ``False`` never uses it. The interpreter is resolved on ``SAFE_PATH``; when the server is
    root and the given interpreter lies where an unprivileged uid cannot reach (``/root/...``), the system
    ``python3`` is used instead. ``wrapper`` (``srt``) replaces bubblewrap. Call ``cleanup_launch`` when done, even
    if the process never started.
    """
    if not python_argv:
        raise ValueError("python_argv is empty")
    bwrap: Bubblewrap | None = None
    reason = "not requested"
    if use_bubblewrap is not False and wrapper is None:
        bwrap, reason = _detect_bubblewrap()
        if bwrap is None and use_bubblewrap:
            raise SandboxUnavailableError(reason)
    root_server = os.geteuid() == 0
    scratch_root = scratch_root or default_scratch_root()
    user = _allocate_uid(scratch_root) if root_server else None
    scratch: Path | None = None
    try:
        interpreter, prefix_dirs, note = _choose_interpreter(python_argv[0], other_user=root_server)
        scratch = _make_scratch_dir(scratch_root, user)
        command = [interpreter, *python_argv[1:]]
        path = SAFE_PATH
        if wrapper is not None:
            rlimits = resource_limits(limits, nproc=wrapper.process_limit(limits))
            argv, what = wrapper.wrap(wrap_argv(interpreter, command, rlimits), scratch, user)
            home = str(scratch)
            path = wrapper.search_path()
        elif bwrap is not None:
            # bwrap's pid-1 reaper is a task of the namespace too.
            rlimits = resource_limits(limits, nproc=limits.max_processes + 1)
            inner = wrap_argv(interpreter, command, rlimits)
            tmp_bind = None if bwrap.has_size else str(scratch)
            argv = bwrap_argv(
                bwrap,
                inner,
                extra_ro_dirs=prefix_dirs,
                tmp_mb=limits.scratch_mb,
                shm_mb=limits.scratch_mb,
                tmp_bind=tmp_bind,
            )
            home = "/tmp"
            what = f"bubblewrap {bwrap.version} (no network, read-only system, /tmp capped at {limits.scratch_mb} MB)"
        else:
            # RLIMIT_NPROC counts every task of the real uid: exact with a session uid, else allow for the rest.
            base = 0 if user is not None else _tasks_of_real_user(os.getuid())
            rlimits = resource_limits(limits, nproc=base + limits.max_processes)
            argv = wrap_argv(interpreter, command, rlimits)
            home = str(scratch)
            what = f"plain process, NOT isolated (bubblewrap: {reason})"
        env = {
            "PATH": path,
            "LANG": "C.UTF-8",
            "HOME": home,
            "TMPDIR": home,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8",
            # Each glibc malloc arena reserves 64 MB of address space; RLIMIT_AS would be eaten by arenas.
            "MALLOC_ARENA_MAX": "2",
        }
        who = f"session uid {user}" if user is not None else f"server uid {os.getuid()}"
        return LaunchSpec(
            argv=argv,
            env=env,
            cwd=str(scratch),
            user=user,
            group=user,
            scratch_dir=scratch,
            isolated=bwrap is not None or wrapper is not None,
            description=f"{what}; {who}; interpreter {interpreter}{note}",
            session_user=user is not None,
        )
    except BaseException:
        if scratch is not None:
            _remove_tree(scratch)
        if user is not None:
            _release_uid(user)
        raise


# --- ending ---------------------------------------------------------------------------------------------------


def kill_user_processes(uid: int, *, timeout_s: float = _KILL_TIMEOUT_S) -> bool:
    """SIGKILL every process of session uid ``uid`` until none is left; False if some survived ``timeout_s``.

    Refuses uids outside ``SESSION_UIDS`` so that a bug can never kill the server's or anyone else's processes.
    """
    if uid not in SESSION_UIDS:
        raise ValueError(f"refusing to kill processes of uid {uid}: not a session uid")
    deadline = time.monotonic() + timeout_s
    while True:
        pids = processes_of_user(uid)
        if not pids:
            return True
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def kill_process_tree(pid: int, spec: LaunchSpec | None = None) -> None:
    """SIGKILL the process group led by ``pid`` (the launched process), and every process of the session uid.

    With bubblewrap, killing bwrap's group takes its pid namespace down with it; without, a program that left its
    process group (``setsid``) is still caught by the session uid when the server runs as root.
    """
    for kill in (os.killpg, os.kill):
        with suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
    if spec is not None and spec.session_user and spec.user is not None:
        kill_user_processes(spec.user)


def cleanup_launch(spec: LaunchSpec) -> None:
    """Kill what is left of the session uid, remove the scratch directory, free the uid. Idempotent."""
    survivors = False
    if spec.session_user and spec.user is not None:
        survivors = not kill_user_processes(spec.user)
    _remove_tree(spec.scratch_dir)
    if spec.user is not None and not survivors:
        _release_uid(spec.user)


def reap_stale_scratch_dirs(root: Path | None = None) -> list[Path]:
    """Remove scratch directories left by servers that died (and kill their session uids' processes).

    A directory is stale when the server process that made it (pid and start time, from its name) is gone.
    """
    root = root or default_scratch_root()
    removed: list[Path] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return removed
    for path in entries:
        match = _SCRATCH_NAME.match(path.name)
        if match is None or _start_time(int(match["pid"])) == match["start"]:
            continue
        uid = int(match["uid"]) if match["uid"] else None
        if uid is not None and uid in SESSION_UIDS and os.geteuid() == 0:
            kill_user_processes(uid)
        _remove_tree(path)
        removed.append(path)
    return removed

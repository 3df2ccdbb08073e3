"""SECURITY.md, "Filesystem and kernel surface", and the host's secrets (principle 1).

The host's home, SSH keys, cloud credentials, the server's config file and its environment are not visible;
system paths are read-only and only the size-capped scratch area is writable; device nodes, ``/dev/mem``,
setuid escalation, ``unshare``, ``mount`` and ``ptrace`` of anything outside are refused. The server offers no
file export, so there is nothing a symlink or hardlink made inside could be read through.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from ptc_mcp.sandboxes.process.isolation import default_scratch_root
from ptc_mcp.server import TOOL_NAME, build_server
from tests.security.conftest import Secured, not_under, only, secured_app

pytestmark = pytest.mark.anyio

SECRET = "ptc-security-secret-7f3a9c"

PROBE_PATHS = """
import os
paths = {paths!r}
seen = {{}}
for path in paths:
    try:
        if os.path.isdir(path):
            seen[path] = sorted(os.listdir(path))[:5]
        else:
            with open(path, "rb") as handle:
                seen[path] = handle.read(64).decode("latin-1")
    except OSError as exc:
        seen[path] = type(exc).__name__
seen
"""


async def test_the_hosts_home_keys_credentials_and_the_servers_config_are_not_visible(
    secured: Secured, tmp_path: Path
) -> None:
    config = tmp_path / "ptc-mcp.json"
    config.write_text(json.dumps({"mcpServers": {}, "secret": SECRET}))
    host_paths = [
        str(Path.home()),
        str(Path.home() / ".ssh" / "id_rsa"),
        str(Path.home() / ".aws" / "credentials"),
        str(Path.home() / ".config" / "gcloud"),
        str(Path.home() / ".docker" / "config.json"),
        "/root",
        "/home",
        "/etc/shadow",
        "/var/run/docker.sock",
        "/run/docker.sock",
        str(config),
        str(tmp_path),
        os.getcwd(),
        sys.prefix,
        f"/proc/{os.getpid()}/environ",
    ]
    result = await secured.run(PROBE_PATHS.format(paths=host_paths))
    assert result["status"] == "ok", result
    seen: dict[str, Any] = result["result"]
    visible = {path: value for path, value in seen.items() if value not in ("FileNotFoundError", "PermissionError")}
    # The sandbox's own home is /tmp (a fresh tmpfs); a container image may have an empty /root or /home.
    assert {path: value for path, value in visible.items() if value not in ([], "")} == {}, visible
    assert SECRET not in json.dumps(result)
    await secured.assert_serving()


ENVIRONMENT_AND_PROCESSES = """
import os
found = {"environ": dict(os.environ), "processes": []}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                found["processes"].append(handle.read().replace(b"\\0", b" ").decode("latin-1")[:200])
            with open(f"/proc/{entry}/environ", "rb") as handle:
                found["processes"].append(handle.read().decode("latin-1"))
        except OSError:
            pass
found
"""


@only("process", "srt", "docker", reason="agentcore's interpreter process belongs to the service (here: the emulator)")
async def test_no_secret_of_the_server_or_its_config_reaches_the_sandbox_its_output_or_container_metadata(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTC_SECURITY_SECRET", SECRET)
    servers = {"fx": {"command": sys.executable, "args": ["-c", "pass"], "env": {"TOKEN": SECRET}}}
    # Room for the whole environment and process list (srt adds a dozen long proxy variables).
    async with secured_app(secured.backend.under_test, servers, max_output_bytes=65536) as fresh:
        call = await fresh.call(ENVIRONMENT_AND_PROCESSES)
        listed = await fresh.client.list_tools()
        metadata = await _container_metadata(fresh)
    assert call.structured_content is not None and call.structured_content["status"] == "ok", call
    found = call.structured_content["result"]
    assert SECRET not in json.dumps(call.model_dump(mode="json"))
    assert SECRET not in json.dumps(listed.model_dump(mode="json"))
    assert SECRET not in metadata
    own = SRT_PROXY_VARIABLES if secured.kind == "srt" else set()
    environ = set(found["environ"]) - own
    assert not any(key.startswith(("PTC_", "AWS_", "DOCKER_", "VIRTUAL_ENV")) for key in environ), environ
    assert not any("pytest" in line or "ptc_mcp" in line for line in found["processes"]), found["processes"]


SRT_PROXY_VARIABLES = {"DOCKER_HTTP_PROXY", "DOCKER_HTTPS_PROXY"}
"""srt points these at its own in-sandbox proxy (which refuses every destination here): not the host's."""


async def _container_metadata(secured: Secured) -> str:
    """Everything the engine keeps about the session's containers (``docker inspect``), or ``""``."""
    if secured.kind != "docker":
        return ""
    import anyio
    import docker

    def inspect() -> str:
        client = docker.from_env(timeout=30)
        ids = [session.container_id for session in secured.backend.sessions]  # type: ignore[attr-defined]
        return json.dumps([client.api.inspect_container(container_id) for container_id in ids])

    return await anyio.to_thread.run_sync(inspect)


WRITE_EVERYWHERE = """
import errno, os
outcome = {}
system = ("/", "/usr", "/usr/lib", "/etc", "/bin", "/var", "/opt", "/proc/sys/kernel", "/dev")
for directory in (*system, "/tmp", "/dev/shm"):
    path = os.path.join(directory, "ptc-write-probe")
    try:
        with open(path, "w") as handle:
            handle.write("x")
        os.unlink(path)
        outcome[directory] = "written"
    except OSError as exc:
        outcome[directory] = errno.errorcode.get(exc.errno, str(exc.errno))
outcome
"""


@only(
    "process", "srt", "docker", reason="agentcore's filesystem is the service's (here: the emulator's process sandbox)"
)
@not_under(
    "srt", reason="/dev is writable: srt mounts it as a tmpfs (bubblewrap's --dev) and does not remount it read-only"
)
async def test_system_paths_are_read_only_and_only_the_scratch_area_is_writable(secured: Secured) -> None:
    result = await secured.run(WRITE_EVERYWHERE)
    assert result["status"] == "ok", result
    outcome = result["result"]
    writable = sorted(directory for directory, what in outcome.items() if what == "written")
    assert writable == ["/dev/shm", "/tmp"], outcome
    assert {what for what in outcome.values() if what != "written"} <= {"EROFS", "EACCES", "ENOENT", "EPERM"}
    await secured.assert_serving()


@only("srt", reason="the srt backend's own shape of the case above")
async def test_under_srt_system_paths_are_read_only_and_only_private_mounts_and_the_scratch_are_writable(
    secured: Secured,
) -> None:
    result = await secured.run(WRITE_EVERYWHERE + "\nimport tempfile\n(outcome, os.getcwd(), os.environ['HOME'])")
    assert result["status"] == "ok", result
    outcome, cwd, home = result["result"]
    writable = sorted(directory for directory, what in outcome.items() if what == "written")
    assert writable == ["/dev", "/dev/shm", "/tmp"], outcome  # the sandbox's own tmpfs mounts, in memory
    assert {what for what in outcome.values() if what != "written"} <= {"EROFS", "EACCES", "ENOENT", "EPERM"}
    assert cwd == home and Path(cwd).parent == default_scratch_root()  # the session's scratch directory
    await secured.assert_serving()


async def test_the_server_offers_no_file_export_and_tmp_is_private_to_the_session(secured: Secured) -> None:
    """Links made inside cannot be followed from outside: results are text and JSON, nothing reads a path."""
    with pytest.raises(Exception):  # noqa: B017 - no resources capability: the request is refused
        await secured.client.list_resources()
    listed = await secured.client.list_tools()
    assert [tool.name for tool in listed.tools] == ["execute_program"]
    schema = json.dumps(listed.tools[0].output_schema)
    assert "file" not in schema.lower() and "uri" not in schema.lower()
    made = await secured.run(
        "import os\n"
        "open('/tmp/private', 'w').write('mine')\n"
        "os.symlink('/etc/shadow', '/tmp/shadow-link')\n"
        "os.symlink('/proc/1/root/etc', '/tmp/root-link')\n"
        "try:\n    os.link('/usr/bin/env', '/tmp/hard-link')\n    hard = 'linked'\n"
        "except OSError as exc:\n    hard = exc.errno\n"
        "try:\n    shadow = open('/tmp/shadow-link', 'rb').read(16).decode('latin-1')\n"
        "except OSError as exc:\n    shadow = type(exc).__name__\n"
        "{'hard': hard, 'shadow': shadow}"
    )
    assert made["status"] == "ok", made["error"]
    # Not there inside (bubblewrap, docker), or the host's, unreadable (srt shows the host's system read-only).
    assert made["result"]["shadow"] in ("FileNotFoundError", "PermissionError", ""), made["result"]
    assert not (Path("/tmp") / "private").exists() or (Path("/tmp") / "private").read_text() != "mine"
    other = await secured.run("import os\nsorted(os.listdir('/tmp'))", session=None, reset=False)
    assert other["status"] == "ok"
    async with Client(build_server(secured.app), mode="legacy") as second:  # another connection: another session
        elsewhere = await second.call_tool(TOOL_NAME, {"code": "import os\nsorted(os.listdir('/tmp'))"})
    assert elsewhere.structured_content is not None, elsewhere
    listing = elsewhere.structured_content["result"]
    assert "private" not in listing and "shadow-link" not in listing
    await secured.assert_serving()


KERNEL_SURFACE = """
import ctypes, errno, os, stat
libc = ctypes.CDLL(None, use_errno=True)
outcome = {}

def attempt(name, function):
    try:
        value = function()
    except OSError as exc:
        outcome[name] = errno.errorcode.get(exc.errno, str(exc.errno))
        return
    if isinstance(value, int) and value == -1:
        outcome[name] = errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    else:
        outcome[name] = "allowed"

attempt("mknod", lambda: os.mknod("/tmp/mem", stat.S_IFCHR | 0o600, os.makedev(1, 1)))
attempt("dev-mem", lambda: open("/dev/mem", "rb"))
attempt("dev-kmem", lambda: open("/dev/kmem", "rb"))
attempt("unshare-user", lambda: libc.unshare(0x10000000))
attempt("unshare-mount", lambda: libc.unshare(0x00020000))
attempt("unshare-net", lambda: libc.unshare(0x40000000))
os.makedirs("/tmp/mnt", exist_ok=True)
attempt("mount", lambda: libc.mount(b"none", b"/tmp/mnt", b"tmpfs", 0, None))
attempt("remount-root-rw", lambda: libc.mount(b"none", b"/", None, 0x20 | 0x1000, None))  # MS_REMOUNT|MS_BIND
attempt("setuid-0", lambda: os.setuid(0))
attempt("chroot", lambda: os.chroot("/tmp"))
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
attempt("ptrace-host-server", lambda: libc.ptrace(16, {server_pid}, None, None))  # PTRACE_ATTACH
setuid = []
for directory in ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/lib"):
    try:
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            try:
                if os.stat(path).st_mode & stat.S_ISUID:
                    setuid.append(path)
            except OSError:
                pass
    except OSError:
        pass
status = {k: v.strip() for k, v in (line.split(":", 1) for line in open("/proc/self/status"))}
outcome["setuid-binaries"] = len(setuid)
outcome["no_new_privs"] = status["NoNewPrivs"]
outcome["cap_eff"] = status["CapEff"]
outcome["uid"] = os.getuid()
outcome
"""


@only(
    "process",
    "srt",
    "docker",
    reason="agentcore's kernel surface is the service's (here: the emulator's process sandbox)",
)
async def test_mknod_dev_mem_setuid_unshare_mount_and_ptrace_are_not_permitted(secured: Secured) -> None:
    result = await secured.run(KERNEL_SURFACE.replace("{server_pid}", str(os.getpid())))
    assert result["status"] == "ok", result
    outcome = result["result"]
    refused = {"EPERM", "EACCES", "ENOENT", "ENOSPC", "EINVAL", "ESRCH", "EROFS"}
    for name in (
        "mknod",
        "dev-mem",
        "dev-kmem",
        "unshare-user",
        "unshare-mount",
        "unshare-net",
        "mount",
        "remount-root-rw",
        "setuid-0",
        "chroot",
        "ptrace-host-server",
    ):
        assert outcome[name] in refused, (name, outcome)
    # Setuid binaries may be visible (read-only /usr), but no_new_privs makes their bit inert, and no
    # capability is held to begin with.
    assert outcome["no_new_privs"] == "1"
    assert outcome["cap_eff"] == "0000000000000000"
    assert outcome["uid"] != 0
    await secured.assert_serving()

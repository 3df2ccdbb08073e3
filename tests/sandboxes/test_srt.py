"""The ``srt`` backend's own behaviour: its settings, its config, ``auto``'s choice of it, its sessions as root.

The shared conformance and security suites run on it too (``tests/sandboxes/conftest.py``'s ``BACKENDS``).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from ptc_mcp.config import Config, load_config, parse_config
from ptc_mcp.errors import ConfigError, SandboxUnavailableError
from ptc_mcp.output import OutputCollector
from ptc_mcp.sandboxes import create_backend, sandbox_limits
from ptc_mcp.sandboxes.base import RunReport, RunRequest, SandboxLimits, SandboxSession
from ptc_mcp.sandboxes.process import isolation
from ptc_mcp.sandboxes.process.isolation import SESSION_UIDS
from ptc_mcp.sandboxes.process.srt import SrtBackend, SrtWrapper, parse_srt_settings, settings_document, srt_status
from tests.test_cli import write

pytestmark = [pytest.mark.anyio, pytest.mark.srt]

SECRET = "ptc-srt-secret-51c0de"


@pytest.fixture(autouse=True)
def _srt_usable() -> None:
    usable, reason = srt_status()
    if not usable:
        pytest.skip(f"srt is not usable here: {reason}")


async def run(session: SandboxSession, code: str) -> RunReport:
    async def no_tools(name: str, arguments: dict[str, Any]) -> Any:
        raise AssertionError("no tool calls expected")

    request = RunRequest("srt-test", code, {"servers": []}, "v", 4096)
    with anyio.fail_after(60):
        return await session.run(request, no_tools, OutputCollector(4096))


def test_settings_deny_the_network_the_homes_the_config_and_credentials_and_allow_writes_to_scratch_only(
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text("{}")
    document = settings_document(tmp_path / "scratch", "/usr/bin/python3", config_file)
    assert document["network"]["allowedDomains"] == []
    assert document["network"]["deniedDomains"] == ["*"]
    filesystem = document["filesystem"]
    assert filesystem["allowWrite"] == [str(tmp_path / "scratch")]
    for denied in (str(Path.home()), str(config_file), os.getcwd(), sys.prefix, "/tmp"):
        assert denied in filesystem["denyRead"], denied
    files = {entry["path"] for entry in document["credentials"]["files"]}
    assert all(entry["mode"] == "deny" for entry in document["credentials"]["files"])
    if Path("/etc/shadow").exists():
        assert "/etc/shadow" in files
    assert {entry["name"] for entry in document["credentials"]["envVars"]} >= {"AWS_SECRET_ACCESS_KEY"}


def test_settings_never_deny_the_system_or_the_sandboxs_own_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server started from ``/`` (as a desktop app may start it) with a Python installed in ``/usr``."""
    monkeypatch.chdir("/")
    monkeypatch.setattr(sys, "prefix", "/usr")
    document = settings_document(tmp_path / "scratch", "/usr/bin/python3", None)
    denied = document["filesystem"]["denyRead"]
    assert "/" not in denied and "/usr" not in denied
    prefix = tmp_path / "python"
    (prefix / "bin").mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    document = settings_document(tmp_path / "scratch", str(prefix / "bin" / "python3"), None)
    assert str(prefix) not in document["filesystem"]["denyRead"]
    assert str(prefix) in document["filesystem"]["allowRead"]


def test_the_srt_section_accepts_a_command_and_names_an_unknown_key() -> None:
    assert parse_srt_settings({}).command == ("srt",)
    assert parse_srt_settings({"command": "npx -y @anthropic-ai/sandbox-runtime"}).command[0] == "npx"
    with pytest.raises(ConfigError, match=r"sandbox\.srt\.comand"):
        parse_srt_settings({"comand": "srt"})
    with pytest.raises(ConfigError, match=r"sandbox\.srt\.command"):
        parse_srt_settings({"command": ""})


def test_kind_srt_without_srt_is_refused_naming_what_to_install() -> None:
    config = parse_config({"sandbox": {"kind": "srt", "srt": {"command": "/nonexistent/srt"}}}, environ={})
    with pytest.raises(SandboxUnavailableError, match="npm install -g @anthropic-ai/sandbox-runtime"):
        create_backend(config)


@pytest.fixture
def no_direct_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A machine where ptc-mcp cannot use bubblewrap itself (as on macOS and Windows, where srt has other means)."""
    monkeypatch.setattr(isolation, "_detect_bubblewrap", lambda: (None, "bubblewrap is switched off for this test"))
    yield


async def test_auto_takes_srt_where_bubblewrap_is_not_usable_directly(no_direct_bubblewrap: None) -> None:
    backend = create_backend(Config())
    try:
        assert backend.kind == "srt" and backend.isolated
        session = await backend.start_session()
        try:
            report = await run(session, "6 * 7")
        finally:
            await session.aclose()
        assert report.ok and report.result == 42
    finally:
        await backend.aclose()


@pytest.fixture
def bubblewrap_off_in_children(tmp_path: Path) -> dict[str, str]:
    """An environment in which every ``ptc-mcp`` process started from it cannot use bubblewrap directly."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import ptc_mcp.sandboxes.process.isolation as isolation\n"
        "isolation._detect_bubblewrap = lambda: (None, 'bubblewrap is switched off for this test')\n"
    )
    return {**os.environ, "PYTHONPATH": str(site)}


def test_check_reports_srt_when_auto_chose_it(tmp_path: Path, bubblewrap_off_in_children: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ptc_mcp", "check", "--config", write(tmp_path, {"mcpServers": {}})],
        capture_output=True,
        text=True,
        timeout=120,
        env=bubblewrap_off_in_children,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "sandbox: srt (isolated)" in done.stdout


def test_check_names_a_bad_key_of_the_srt_section_without_a_traceback(tmp_path: Path) -> None:
    config = write(tmp_path, {"sandbox": {"kind": "srt", "srt": {"comand": "srt"}}})
    done = subprocess.run(
        [sys.executable, "-m", "ptc_mcp", "check", "--config", config],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "sandbox.srt.comand" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_demo_reports_srt_when_auto_chose_it_and_runs_the_audit_on_it(
    bubblewrap_off_in_children: dict[str, str],
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ptc_mcp", "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        env=bubblewrap_off_in_children,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sandbox: srt (isolated)")
    assert "answer checked against the ground truth" in done.stdout


READ_OR_ERROR = """
try:
    seen = open({path!r}).read()
except OSError as exc:
    seen = type(exc).__name__
seen
"""


@pytest.fixture
def config_outside_denied_directories() -> Iterator[Path]:
    """A config file with a secret, not under a home or /tmp, readable by any uid: only srt's settings deny it."""
    folder = Path(tempfile.mkdtemp(prefix="ptc-mcp-srt-config-", dir="/var/tmp"))
    folder.chmod(0o755)
    path = folder / "config.json"
    server = {"command": "python3", "env": {"TOKEN": SECRET}}
    path.write_text(json.dumps({"mcpServers": {"x": server}, "sandbox": {"kind": "srt", "warm_pool": 0}}))
    path.chmod(0o644)
    yield path
    shutil.rmtree(folder)


async def test_the_servers_config_file_is_unreadable_inside_wherever_it_lives(
    config_outside_denied_directories: Path,
) -> None:
    path = config_outside_denied_directories
    config = load_config(path)
    assert config.source == path.resolve()
    backend = create_backend(config)
    try:
        session = await backend.start_session()
        try:
            report = await run(session, READ_OR_ERROR.format(path=str(path)))
        finally:
            await session.aclose()
    finally:
        await backend.aclose()
    assert report.ok, report
    assert SECRET not in json.dumps(report.result)
    assert report.result in ("PermissionError", "FileNotFoundError", "")


async def test_credential_files_the_servers_environment_names_and_its_oauth_tokens_are_unreadable_inside(
    config_outside_denied_directories: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = config_outside_denied_directories.with_name("kubeconfig")
    kubeconfig.write_text(f"token: {SECRET}\n")
    kubeconfig.chmod(0o644)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    token_dir = config_outside_denied_directories.with_name("tokens")
    token_dir.mkdir(mode=0o755)
    (token_dir / "server.json").write_text(json.dumps({"access_token": SECRET}))
    (token_dir / "server.json").chmod(0o644)
    monkeypatch.setenv("PTC_MCP_TOKEN_DIR", str(token_dir))
    backend = SrtBackend(_limits())
    try:
        session = await backend.start_session()
        try:
            report = await run(session, READ_OR_ERROR.format(path=str(kubeconfig)))
            tokens = await run(session, READ_OR_ERROR.format(path=str(token_dir / "server.json")))
        finally:
            await session.aclose()
    finally:
        await backend.aclose()
    assert report.ok and tokens.ok, (report, tokens)
    assert SECRET not in json.dumps([report.result, tokens.result])


@pytest.mark.skipif(os.geteuid() != 0, reason="the server is not root here: there are no session uids")
async def test_under_a_root_server_the_program_runs_as_a_session_uid_without_capabilities() -> None:
    backend = SrtBackend(_limits())
    session = await backend.start_session()
    try:
        report = await run(
            session,
            "import os\nstatus = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
            "(os.getuid(), os.geteuid(), status['CapEff'].strip(), status['NoNewPrivs'].strip())",
        )
        assert report.ok, report
        uid, euid, caps, no_new_privs = report.result
        assert uid in SESSION_UIDS and euid == uid
        assert session.launch.user == uid  # type: ignore[attr-defined]
        assert int(caps, 16) == 0 and no_new_privs == "1"
    finally:
        await session.aclose()
        await backend.aclose()


def _limits() -> SandboxLimits:
    return sandbox_limits(Config())


async def test_warm_interpreters_are_taken_without_waiting_for_srt() -> None:
    backend = SrtBackend(_limits(), warm_pool=1)
    async with anyio.create_task_group() as group:
        group.start_soon(backend.keep_warm)
        with anyio.fail_after(60):
            while len(backend.pool) < 1:
                await anyio.sleep(0.05)
        warm = backend.pool.take()
        assert warm is not None
        session = warm
        try:
            report = await run(session, "import os\nos.environ['HOME'] == os.getcwd()")
            assert report.ok and report.result is True
        finally:
            await session.aclose()
            group.cancel_scope.cancel()
    await backend.aclose()


@pytest.mark.parametrize(
    ("platform", "advice"),
    [("linux", "apt-get install bubblewrap socat ripgrep"), ("darwin", "brew install ripgrep")],
)
def test_auto_with_nothing_usable_refuses_naming_what_to_install_for_the_system(
    no_direct_bubblewrap: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, platform: str, advice: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.setattr(sys, "platform", platform)
    config = parse_config({"sandbox": {"kind": "auto", "srt": {"command": "/nonexistent/srt"}}}, environ={})
    with pytest.raises(SandboxUnavailableError) as refused:
        create_backend(config)
    message = str(refused.value)
    assert "npm install -g @anthropic-ai/sandbox-runtime" in message and advice in message
    assert "srt: /nonexistent/srt not found" in message  # why srt was not taken


def test_the_process_limit_counts_the_session_on_linux_and_is_left_alone_where_it_counts_the_whole_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrapper = SrtWrapper(["srt"])
    limits = SandboxLimits(max_processes=10)
    assert wrapper.process_limit(limits) == 12  # the program's 10, srt's seccomp helper and shell
    monkeypatch.setattr(sys, "platform", "darwin")
    assert wrapper.process_limit(limits) == resource.RLIM_INFINITY

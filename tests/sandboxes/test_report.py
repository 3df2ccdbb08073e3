"""Which sandbox a config gets, and why each other one is not used (``sandbox_report``, ``create_backend``)."""

from __future__ import annotations

import sys

import pytest

from ptc_mcp.config import Config
from ptc_mcp.errors import SandboxUnavailableError
from ptc_mcp.sandboxes import create_backend, sandbox_report
from ptc_mcp.sandboxes.process import isolation

NO_BUBBLEWRAP = "bubblewrap not installed (apt-get install bubblewrap)"
NO_SRT = {"srt": {"command": "/nonexistent/srt"}}
"""A config whose srt command is missing, as on a machine without srt."""


def bare_config(**sandbox: object) -> Config:
    return Config.model_validate({"sandbox": {**NO_SRT, **sandbox}})


@pytest.fixture
def bare_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """No bubblewrap (its detection answers as on a machine without it) and no Docker engine (a socket that is not)."""
    monkeypatch.setattr(isolation, "_detect_bubblewrap", lambda: (None, NO_BUBBLEWRAP))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def test_on_a_machine_without_isolation_every_backend_says_what_to_install(bare_machine: None) -> None:
    report = sandbox_report(bare_config())
    assert report.chosen is None and not report.isolated
    lines = {line.split(": ", 1)[0]: line for line in report.lines()}
    assert lines["process"] == f"process: {NO_BUBBLEWRAP}"
    assert lines["docker"].startswith("docker: no Docker engine answers") and "DOCKER_HOST" in lines["docker"]
    assert lines["agentcore"].startswith("agentcore: not tried by auto")
    assert "serve refuses to start" in report.summary()
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap") as refused:
        create_backend(bare_config())
    assert "no Docker engine answers" in str(refused.value)
    assert lines["srt"].startswith("srt: /nonexistent/srt not found")


def test_an_explicit_process_kind_without_bubblewrap_is_refused_saying_why(bare_machine: None) -> None:
    with pytest.raises(SandboxUnavailableError, match="kind='process'") as refused:
        create_backend(bare_config(kind="process"))
    assert NO_BUBBLEWRAP in str(refused.value)


def test_opting_in_to_unisolated_code_is_reported_as_not_isolated(bare_machine: None) -> None:
    report = sandbox_report(bare_config(allow_unisolated=True))
    assert report.chosen == "process" and not report.isolated
    assert "NOT ISOLATED" in report.summary()
    assert report.lines()[0] == f"process: chosen, NOT ISOLATED ({NO_BUBBLEWRAP})"


def test_a_missing_extra_is_named_with_the_pip_command(bare_machine: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # `import docker` now fails as without the extra
    for module in ("ptc_mcp.sandboxes.docker", "ptc_mcp.sandboxes.docker.backend"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    (docker,) = [line for line in sandbox_report(bare_config()).lines() if line.startswith("docker:")]
    assert docker == 'docker: not installed (pip install "ptc-mcp[docker]")'


@pytest.mark.bubblewrap
def test_auto_takes_bubblewrap_first_and_says_why_the_others_were_not_chosen() -> None:
    if not isolation.bubblewrap_status()[0]:
        pytest.skip(f"no bubblewrap here: {isolation.bubblewrap_status()[1]}")
    report = sandbox_report(Config())
    assert (report.chosen, report.isolated) == ("process", True)
    lines = {line.split(": ", 1)[0]: line for line in report.lines()}
    assert lines["process"].startswith("process: chosen (bubblewrap ")
    assert set(lines) == {"process", "srt", "docker", "agentcore"}
    assert not any(line.split(": ", 1)[1].startswith("chosen") for kind, line in lines.items() if kind != "process")


def test_an_explicit_kind_is_chosen_and_the_others_say_so() -> None:
    report = sandbox_report(Config.model_validate({"sandbox": {"kind": "agentcore"}}))
    assert report.chosen == "agentcore"
    lines = {line.split(": ", 1)[0]: line for line in report.lines()}
    assert lines["agentcore"].startswith("agentcore: chosen (code interpreter ")
    assert not any(line.split(": ", 1)[1].startswith("chosen") for kind, line in lines.items() if kind != "agentcore")


@pytest.fixture
def unisolated_kind(monkeypatch: pytest.MonkeyPatch) -> str:
    """A kind whose probe says it isolates but whose backend does not, tried first by ``auto``."""
    from ptc_mcp import sandboxes
    from tests.sandboxes import unisolated_kind

    unisolated_kind.CLOSED.clear()
    monkeypatch.setitem(sandboxes.MODULES, unisolated_kind.KIND, unisolated_kind.__name__)
    monkeypatch.setattr(sandboxes, "AUTO_ORDER", (unisolated_kind.KIND, *sandboxes.AUTO_ORDER))
    return unisolated_kind.KIND


@pytest.mark.anyio
async def test_auto_closes_a_backend_it_loaded_but_does_not_use(unisolated_kind: str) -> None:
    from tests.sandboxes.unisolated_kind import CLOSED

    # On a running event loop, as `open_app` calls it.
    try:
        backend = create_backend(bare_config(warm_pool=1))
    except SandboxUnavailableError:  # nothing isolates here: refused, and still nothing left open
        backend = None
    assert [dropped.kind for dropped in CLOSED] == [unisolated_kind]
    assert CLOSED[0].pool.started == 0, "loading a backend started nothing: dropping it was cheap"
    if backend is not None:
        assert backend.kind != unisolated_kind and backend.isolated
        assert backend not in CLOSED
        await backend.aclose()


def test_an_explicit_kind_that_does_not_isolate_is_closed_when_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from ptc_mcp import sandboxes
    from tests.sandboxes import unisolated_kind

    unisolated_kind.CLOSED.clear()
    monkeypatch.setitem(sandboxes.MODULES, "process", unisolated_kind.__name__)
    with pytest.raises(SandboxUnavailableError, match="no isolated sandbox"):
        create_backend(bare_config(kind="process"))
    assert len(unisolated_kind.CLOSED) == 1

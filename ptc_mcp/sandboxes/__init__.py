"""Sandbox backends, chosen by ``sandbox.kind`` and imported lazily.

``process`` (bubblewrap when present), ``srt`` (Anthropic's sandbox-runtime), ``docker`` and ``agentcore``
implement ``SandboxBackend`` (see ``base.py``). ``auto`` picks the best isolated one available (``process`` with
bubblewrap, else ``srt``, else ``docker``); with none, it refuses unless the config opts in to unisolated code.
"""

from __future__ import annotations

import importlib
import logging
import sys

from ptc_mcp.config import Config
from ptc_mcp.errors import SandboxUnavailableError
from ptc_mcp.sandboxes.base import SandboxBackend, SandboxLimits

log = logging.getLogger(__name__)

_EXTRAS = {"docker": "docker", "agentcore": "agentcore"}


def sandbox_limits(config: Config) -> SandboxLimits:
    """The per-interpreter limits the config asks for."""
    return SandboxLimits(
        memory_mb=config.limits.memory_mb,
        max_processes=config.sandbox.max_processes,
        max_open_files=config.sandbox.max_open_files,
        scratch_mb=config.sandbox.scratch_mb,
        max_file_size_mb=config.sandbox.scratch_mb,
    )


def _load(kind: str, config: Config) -> SandboxBackend:
    try:
        module = importlib.import_module(f"ptc_mcp.sandboxes.{kind}")
    except ImportError as exc:
        extra = _EXTRAS.get(kind)
        if extra is None:
            raise
        raise ImportError(f'the {kind} sandbox needs an extra: pip install "ptc-mcp[{extra}]" ({exc})') from exc
    backend: SandboxBackend = module.create_backend(config)
    return backend


def create_backend(config: Config, *, allow_unisolated: bool | None = None) -> SandboxBackend:
    """The backend ``sandbox.kind`` names; raises ``SandboxUnavailableError`` saying what to install."""
    kind = config.sandbox.kind
    unisolated_ok = config.sandbox.allow_unisolated if allow_unisolated is None else allow_unisolated
    if kind != "auto":
        backend = _load(kind, config)
        if not backend.isolated and not unisolated_ok:
            raise SandboxUnavailableError(_refusal(kind, getattr(backend, "bubblewrap_reason", "")))
        return backend
    process = _load("process", config)
    if process.isolated:
        return process
    try:
        return _load("srt", config)  # macOS and Windows have no bubblewrap; srt uses their own mechanisms
    except (ImportError, SandboxUnavailableError) as exc:
        srt_reason = str(exc)
    docker_reason = "the docker extra is not installed"
    try:
        docker = _load("docker", config)
    except (ImportError, SandboxUnavailableError) as exc:
        docker_reason = str(exc)
    else:
        if docker.isolated:
            return docker
    if unisolated_ok:
        log.warning("no isolated sandbox is available: running programs UNISOLATED (sandbox.allow_unisolated)")
        return process
    raise SandboxUnavailableError(
        _refusal("auto", f"{getattr(process, 'bubblewrap_reason', '')}; srt: {srt_reason}; docker: {docker_reason}")
    )


def _refusal(kind: str, reason: str) -> str:
    return (
        f"no isolated sandbox is available for sandbox.kind={kind!r} ({reason}). Install {_what_to_install()} "
        'or Docker (pip install "ptc-mcp[docker]" and a running engine), or set '
        '"sandbox": {"allow_unisolated": true} to run programs without isolation at your own risk.'
    )


def _what_to_install() -> str:
    """The daemon-free sandbox for this operating system."""
    srt = "Anthropic's sandbox-runtime (npm install -g @anthropic-ai/sandbox-runtime"
    if sys.platform == "darwin":
        return f"{srt}; brew install ripgrep)"
    if sys.platform == "win32":
        return "Docker Desktop (the daemon-free sandboxes, bubblewrap and srt, do not run ptc-mcp on Windows yet)"
    return f"bubblewrap (apt-get install bubblewrap), {srt}; apt-get install bubblewrap socat ripgrep)"

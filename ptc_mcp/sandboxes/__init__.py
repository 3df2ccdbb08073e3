"""Sandbox backends, chosen by ``sandbox.kind`` and imported lazily.

``process`` (bubblewrap when present), ``srt`` (Anthropic's sandbox-runtime), ``docker`` and ``agentcore``
implement ``SandboxBackend`` (see ``base.py``), each in its own package: ``process/`` (which also holds ``srt``),
``docker/``, ``agentcore/``. What they share sits here: ``base.py`` (the interface), ``protocol.py`` (the wire
protocol with the runtime), ``stream.py`` (the driver over a byte stream) and ``warm_pool.py``. Nothing above
``base.py`` reads anything backend-specific.

Each backend's module (``MODULES``) has ``create_backend(config)`` and ``probe(config)``; ``probe`` says, without
starting anything, whether the backend can isolate programs here and, if not, what to install. ``auto`` takes the
first of ``AUTO_ORDER`` whose probe succeeds; with none, it refuses unless the config opts in to unisolated code.
``sandbox_report`` tells a user which backend a config gets and why each other one is not used (``--version``,
``check``, ``demo``). To add a backend: a package with those two functions, its module in ``MODULES``, its kind
in ``KINDS`` (and in ``AUTO_ORDER`` if ``auto`` may pick it), its extra in ``EXTRAS``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anyio

from ptc_mcp.config import Config
from ptc_mcp.errors import SandboxUnavailableError
from ptc_mcp.sandboxes.base import SandboxBackend, SandboxLimits

log = logging.getLogger(__name__)

AUTO_ORDER: tuple[str, ...] = ("process", "srt", "docker")
"""The backends ``auto`` tries, strongest-and-cheapest first (srt: macOS and Windows have no bubblewrap)."""
KINDS: tuple[str, ...] = ("process", "srt", "docker", "agentcore")
"""Every backend, in the order the report lists them."""
MODULES: dict[str, str] = {
    "process": "ptc_mcp.sandboxes.process",
    "srt": "ptc_mcp.sandboxes.process.srt",
    "docker": "ptc_mcp.sandboxes.docker",
    "agentcore": "ptc_mcp.sandboxes.agentcore",
}
"""kind → the module with its ``create_backend(config)`` and ``probe(config)``."""
EXTRAS: dict[str, tuple[str, str]] = {"docker": ("docker", "docker"), "agentcore": ("agentcore", "bedrock_agentcore")}
"""kind → (the pip extra it needs, a module that extra installs)."""
ONLY_WHEN_ASKED: dict[str, str] = {
    "agentcore": 'it runs programs in AWS; ask for it with "sandbox": {"kind": "agentcore"} and AWS credentials',
}
"""Why ``auto`` never picks a backend outside ``AUTO_ORDER`` (said in the report)."""


def sandbox_limits(config: Config) -> SandboxLimits:
    """The per-interpreter limits the config asks for."""
    return SandboxLimits(
        memory_mb=config.limits.memory_mb,
        max_processes=config.sandbox.max_processes,
        max_open_files=config.sandbox.max_open_files,
        scratch_mb=config.sandbox.scratch_mb,
        max_file_size_mb=config.sandbox.scratch_mb,
    )


def _install_hint(kind: str) -> str:
    extra = EXTRAS.get(kind)
    return f'pip install "ptc-mcp[{extra[0]}]"' if extra else ""


def _load(kind: str, config: Config) -> SandboxBackend:
    try:
        module = importlib.import_module(MODULES.get(kind, f"ptc_mcp.sandboxes.{kind}"))
    except ImportError as exc:
        if kind not in EXTRAS:
            raise
        raise ImportError(f"the {kind} sandbox needs an extra: {_install_hint(kind)} ({exc})") from exc
    backend: SandboxBackend = module.create_backend(config)
    return backend


# --- which backend, and why -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxOption:
    """One backend as this machine offers it."""

    kind: str
    usable: bool | None
    """Whether it can isolate programs here (``None``: not probed, since only an explicit ``sandbox.kind`` uses it)."""
    detail: str
    """What it is when usable; why not otherwise, naming what to install."""


@dataclass(frozen=True)
class SandboxReport:
    """Which backend a config gets on this machine, and why each other one is not used."""

    requested: str
    """``sandbox.kind`` as configured."""
    chosen: str | None
    """The backend ``create_backend`` uses (``None``: it refuses to start)."""
    isolated: bool
    options: tuple[SandboxOption, ...]

    def summary(self) -> str:
        """One line: ``process (isolated), chosen by sandbox.kind "auto"``."""
        if self.chosen is None:
            return f'none: no isolated sandbox for sandbox.kind "{self.requested}" (serve refuses to start)'
        isolation = "isolated" if self.isolated else "NOT ISOLATED"
        return f'{self.chosen} ({isolation}), chosen by sandbox.kind "{self.requested}"'

    def text(self) -> str:
        """``sandbox: <summary>`` and, indented, one line per backend."""
        return "\n".join([f"sandbox: {self.summary()}", *(f"  {line}" for line in self.lines())])

    def lines(self) -> list[str]:
        """One line per backend: chosen (and what it is), or why not."""
        lines = []
        for option in self.options:
            if option.kind == self.chosen:
                verdict = f"chosen ({option.detail})" if option.usable else f"chosen, NOT ISOLATED ({option.detail})"
            elif option.usable is None or not option.usable:
                verdict = option.detail
            elif self.requested != "auto":
                verdict = f'usable, not chosen: sandbox.kind is "{self.requested}" ({option.detail})'
            else:
                verdict = (
                    f"usable, not chosen: auto takes the first usable of {', '.join(AUTO_ORDER)} ({option.detail})"
                )
            lines.append(f"{option.kind}: {verdict}")
        return lines


def probe_backend(kind: str, config: Config) -> SandboxOption:
    """Whether ``kind`` can isolate programs here, without starting anything (its module's ``probe``)."""
    try:
        module = importlib.import_module(MODULES.get(kind, f"ptc_mcp.sandboxes.{kind}"))
    except ImportError as exc:
        if kind not in EXTRAS:
            return SandboxOption(kind, False, f"cannot be used here ({exc})")
        return SandboxOption(kind, False, f"not installed ({_install_hint(kind)})")
    usable, detail = module.probe(config)
    return SandboxOption(kind, bool(usable), detail)


def _unprobed(kind: str) -> SandboxOption:
    extra = EXTRAS.get(kind)
    if extra is not None and importlib.util.find_spec(extra[1]) is None:
        return SandboxOption(kind, None, f"not installed ({_install_hint(kind)})")
    return SandboxOption(kind, None, f"not tried by auto ({ONLY_WHEN_ASKED.get(kind, 'ask for it by sandbox.kind')})")


def _auto_options(config: Config) -> Iterator[SandboxOption]:
    """``AUTO_ORDER``'s probes, lazily (``create_backend`` stops at the first usable one)."""
    for kind in AUTO_ORDER:
        yield probe_backend(kind, config)


def sandbox_report(config: Config, *, allow_unisolated: bool | None = None) -> SandboxReport:
    """Which backend ``create_backend(config)`` uses here and why each other one is not used."""
    requested = config.sandbox.kind
    unisolated_ok = config.sandbox.allow_unisolated if allow_unisolated is None else allow_unisolated
    options = {option.kind: option for option in _auto_options(config)}
    if requested != "auto" and requested not in options:
        options[requested] = probe_backend(requested, config)
    for kind in KINDS:
        options.setdefault(kind, _unprobed(kind))
    ordered = tuple(options[kind] for kind in KINDS if kind in options) + tuple(
        option for kind, option in options.items() if kind not in KINDS
    )
    if requested == "auto":
        chosen = next((kind for kind in AUTO_ORDER if options[kind].usable), None)
    else:
        chosen = requested if options[requested].usable else None
    isolated = chosen is not None
    if chosen is None and unisolated_ok and (requested in ("auto", "process")):
        chosen = "process"
    return SandboxReport(requested=requested, chosen=chosen, isolated=isolated, options=ordered)


# --- creating the backend -------------------------------------------------------------------------------------


def create_backend(config: Config, *, allow_unisolated: bool | None = None) -> SandboxBackend:
    """The backend ``sandbox.kind`` names; raises ``SandboxUnavailableError`` saying what to install."""
    kind = config.sandbox.kind
    unisolated_ok = config.sandbox.allow_unisolated if allow_unisolated is None else allow_unisolated
    if kind != "auto":
        backend = _load(kind, config)
        if not backend.isolated and not unisolated_ok:
            _drop(backend)
            raise SandboxUnavailableError(_refusal(kind, probe_backend(kind, config).detail))
        return backend
    reasons = []
    for option in _auto_options(config):
        if option.usable:
            try:
                backend = _load(option.kind, config)
            except (ImportError, SandboxUnavailableError) as exc:  # gone since the probe
                reasons.append(f"{option.kind}: {exc}")
                continue
            if backend.isolated:
                return backend
            _drop(backend)
        reasons.append(f"{option.kind}: {option.detail}")
    if unisolated_ok:
        log.warning("no isolated sandbox is available: running programs UNISOLATED (sandbox.allow_unisolated)")
        return _load("process", config)
    raise SandboxUnavailableError(_refusal("auto", "; ".join(reasons)))


def _drop(backend: SandboxBackend) -> None:
    """Close a backend that was loaded but will not be used (it may hold a client, a pool).

    Quick, since no backend starts anything before ``keep_warm`` or its first session. ``create_backend`` is
    synchronous and may be called on a running event loop, so the close runs on a loop of its own in a short-lived
    thread, joined before this returns.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="ptc-mcp-drop-backend") as closer:
        try:
            closer.submit(anyio.run, backend.aclose).result()
        except Exception as exc:  # the backend is unused: a failure to close it must not hide why it was dropped
            log.warning("cannot close the unused %s backend: %s", backend.kind, exc)


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

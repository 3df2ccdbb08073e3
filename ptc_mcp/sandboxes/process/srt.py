"""The ``srt`` backend: the ``process`` backend's interpreter, run inside Anthropic's sandbox-runtime (``srt``).

srt wraps a command with the operating system's own mechanism (Seatbelt on macOS, bubblewrap plus a seccomp
filter on Linux, a dedicated user and a WFP firewall on Windows), driven by a JSON settings file. Everything else
is the ``process`` backend's: the same launch plan (clean environment, per-session uid when the server is root,
rlimit prelude, scratch directory), the same process-group kill, warm pool and sessions. Only ``plan_launch``'s
``wrapper`` differs: ``SrtWrapper`` writes the session's settings file into its scratch directory and puts
``srt --settings <file> -- <prelude> <interpreter>`` in front. See docs/security.md for what srt isolates where.
"""

from __future__ import annotations

import sys

from ptc_mcp.errors import ConfigError, SandboxUnavailableError

if sys.platform == "win32":  # the process machinery below it (rlimits, process groups, uids) is POSIX
    raise SandboxUnavailableError(
        "the srt backend does not run on Windows yet (ptc-mcp's launch needs POSIX rlimits and process groups): "
        'use "sandbox": {"kind": "docker"} with Docker Desktop'
    )

import functools
import json
import os
import pwd
import resource
import shlex
import shutil
import subprocess
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptc_mcp.config import Config
from ptc_mcp.config.paths import default_token_dir
from ptc_mcp.sandboxes import sandbox_limits
from ptc_mcp.sandboxes.base import SandboxLimits
from ptc_mcp.sandboxes.process.backend import ProcessBackend
from ptc_mcp.sandboxes.process.bubblewrap import SAFE_PATH
from ptc_mcp.sandboxes.process.isolation import default_scratch_root, plan_launch

__all__ = ["SrtBackend", "SrtSettings", "SrtWrapper", "create_backend", "parse_srt_settings", "srt_status"]

SETTINGS_FILE = ".srt-settings.json"
PROBE_TIMEOUT_S = 60.0
INSTALL_HINT = (
    "install it with `npm install -g @anthropic-ai/sandbox-runtime` (Node.js 20 or later); on Linux it also needs "
    "bubblewrap, socat and ripgrep (apt-get install bubblewrap socat ripgrep), on macOS ripgrep (brew install "
    "ripgrep)"
)

CREDENTIALS_IN_HOME = (
    ".ssh",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".config/gh",
    ".kube",
    ".docker",
    ".gnupg",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".claude",
)
"""Credential files and directories under a home directory (denied as ``credentials.files`` besides the home
itself, so they stay denied even when the home is re-allowed or lives somewhere unusual)."""

SYSTEM_SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh", "/var/run/docker.sock", "/run/docker.sock")
"""Secrets outside any home: password hashes, sudo rules, host SSH keys, the Docker socket."""

CREDENTIAL_FILE_VARIABLES = (
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG",
    "AZURE_CONFIG_DIR",
    "KUBECONFIG",
    "DOCKER_CONFIG",
    "NETRC",
    "SSH_AUTH_SOCK",
)
"""Environment variables of the server that name a credential file somewhere else: their files are denied too."""

CREDENTIAL_ENV_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ANTHROPIC_API_KEY",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "OPENAI_API_KEY",
)
"""Denied as ``credentials.envVars`` too; the sandbox's environment is ptc-mcp's clean one already."""

HOME_ROOTS = ("/home", "/root", "/Users")

SYSTEM_DIRS = frozenset(
    {"/", "/usr", "/usr/local", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/opt", "/var", "/private", "/System"}
    | {"/Library", "/Applications", "/opt/homebrew"}
)
"""Never denied, even when the server runs from one of them (a cwd of ``/``, a Python installed in ``/usr``)."""


@dataclass(frozen=True)
class SrtSettings:
    """``sandbox.srt`` of the config."""

    command: tuple[str, ...] = ("srt",)
    """The ``srt`` command line (a path, a name on PATH, or e.g. ``npx @anthropic-ai/sandbox-runtime``)."""


def parse_srt_settings(raw: dict[str, Any]) -> SrtSettings:
    """Validate ``sandbox.srt``; raises ``ConfigError`` naming the bad key."""
    unknown = sorted(set(raw) - {"command"})
    if unknown:
        raise ConfigError(f"sandbox.srt.{unknown[0]}: unknown key (known: command)")
    command = raw.get("command", "srt")
    if not isinstance(command, str) or not shlex.split(command):
        raise ConfigError('sandbox.srt.command: must be a non-empty string such as "srt" or "/usr/local/bin/srt"')
    return SrtSettings(tuple(shlex.split(command)))


def _resolve(command: tuple[str, ...]) -> list[str] | None:
    found = shutil.which(command[0]) or shutil.which(command[0], path=SAFE_PATH)
    return [os.path.abspath(found), *command[1:]] if found else None


def _existing(paths: list[str]) -> list[str]:
    unique = dict.fromkeys(os.path.abspath(path) for path in paths if path)
    return [path for path in unique if os.path.lexists(path)]


def _server_homes() -> list[str]:
    homes = [str(Path.home())]
    with suppress(KeyError):  # a uid without a passwd entry (containers)
        homes.append(pwd.getpwuid(os.getuid()).pw_dir)
    return homes


def _holds(directory: str, path: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def denied_paths(config_file: Path | None, interpreter: str) -> tuple[list[str], list[str]]:
    """(``filesystem.denyRead``, credential files) for a session: homes, temp dirs, the server's own files."""
    homes = _server_homes()
    reads = [*homes, *HOME_ROOTS, "/tmp", tempfile.gettempdir(), str(default_scratch_root())]
    # The server's working directory and Python installation (its venv, its packages, maybe a .env file), unless
    # the sandbox's own interpreter needs them.
    for own in (os.path.abspath(os.getcwd()), os.path.abspath(sys.prefix)):
        if own not in SYSTEM_DIRS and not _holds(own, interpreter):
            reads.append(own)
    if config_file is not None:
        reads.append(str(config_file))
    credentials = [os.path.join(home, name) for home in homes for name in CREDENTIALS_IN_HOME]
    credentials += [*SYSTEM_SECRETS, *(os.environ.get(name, "") for name in CREDENTIAL_FILE_VARIABLES)]
    credentials.append(str(default_token_dir()))  # OAuth tokens for downstream servers
    return _existing(reads), _existing(credentials)


def settings_document(scratch: Path, interpreter: str, config_file: Path | None) -> dict[str, Any]:
    """The srt settings of one session: no network, reads of the host's secrets denied, writes to ``scratch`` only.

    ``interpreter`` is the sandbox's Python: its installation stays readable (re-allowed under a denied home).
    """
    interpreter = os.path.realpath(interpreter)
    deny_read, credential_files = denied_paths(config_file, interpreter)
    allow = [str(scratch), *_interpreter_dirs(interpreter)]
    return {
        # No allowed domain: srt's proxies refuse every connection, and "*" denies all of them once more.
        "network": {"allowedDomains": [], "deniedDomains": ["*"], "allowLocalBinding": False},
        "filesystem": {
            "denyRead": deny_read,
            "allowRead": allow,
            "allowWrite": [str(scratch)],
            # srt keeps /tmp/claude writable by default; a shared host directory would join sessions.
            "denyWrite": ["/tmp/claude"],
        },
        "credentials": {
            "files": [{"path": path, "mode": "deny"} for path in credential_files],
            "envVars": [{"name": name, "mode": "deny"} for name in CREDENTIAL_ENV_VARIABLES],
        },
    }


class SrtWrapper:
    """Runs the interpreter under ``srt`` with per-session settings (a ``LaunchWrapper`` for ``plan_launch``)."""

    def __init__(self, command: list[str], config_file: Path | None = None) -> None:
        self.command = command
        self.config_file = config_file

    def process_limit(self, limits: SandboxLimits) -> int:
        """On Linux the prelude runs in srt's innermost user namespace, where ``RLIMIT_NPROC`` counts the session's
        tasks only: the program's ``max_processes`` plus srt's helper (apply-seccomp, that namespace's pid 1) and
        shell. Elsewhere (macOS) it counts every process of the user, so no number fits: the limit is left as it is."""
        if sys.platform.startswith("linux"):
            return limits.max_processes + 2
        return resource.RLIM_INFINITY

    def wrap(self, command: list[str], scratch: Path, user: int | None) -> tuple[list[str], str]:
        settings = scratch / SETTINGS_FILE
        document = settings_document(scratch, command[0], self.config_file)
        settings.write_text(json.dumps(document, indent=1), encoding="utf-8")
        if user is not None:
            os.chown(settings, user, user)
        # "--" ends srt's own options: the interpreter's "-c" must not be taken for srt's.
        argv = [*self.command, "--settings", str(settings), "--", *command]
        return argv, f"srt at {self.command[0]} (no network; host secrets unreadable; writes only to {scratch})"

    def search_path(self) -> str:
        """srt is a Node.js script (``#!/usr/bin/env node``): its and node's directories join the safe PATH."""
        dirs = SAFE_PATH.split(":")
        node = shutil.which("node") or shutil.which("node", path=SAFE_PATH)
        for program in (self.command[0], node):
            if program:
                directory = os.path.dirname(os.path.abspath(program))
                if directory not in dirs:
                    dirs.append(directory)
        return ":".join(dirs)


def _interpreter_dirs(real: str) -> list[str]:
    """The installation prefix of an interpreter outside the system directories (it may sit under a home)."""
    prefix = str(Path(real).parent.parent)
    return [] if prefix in SYSTEM_DIRS else [prefix]


@functools.lru_cache(maxsize=8)
def srt_status(command: tuple[str, ...] = ("srt",)) -> tuple[bool, str]:
    """Whether srt can sandbox here, and why not (or which one). Tried for real once (a tiny program), then cached."""
    resolved = _resolve(command)
    if resolved is None:
        return False, f"{command[0]} not found: {INSTALL_HINT}"
    wrapper = SrtWrapper(resolved)
    try:
        python = os.path.realpath(sys.executable)
        spec = plan_launch([python, "-I", "-c", "print('ok')"], SandboxLimits(), wrapper=wrapper)
    except (SandboxUnavailableError, OSError) as exc:
        return False, f"cannot plan an srt sandbox: {exc}"
    try:
        done = subprocess.run(
            spec.argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False, **spec.process_kwargs()
        )
    except subprocess.TimeoutExpired:
        return False, f"srt did not run a program within {PROBE_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return False, f"cannot run {resolved[0]}: {exc.strerror}; {INSTALL_HINT}"
    finally:
        spec.cleanup()
    if done.returncode != 0 or done.stdout.strip() != "ok":
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {done.returncode}"
        return False, f"srt cannot create a sandbox here: {why}"
    return True, f"srt {_version(resolved)} at {resolved[0]}"


def _version(resolved: list[str]) -> str:
    try:
        done = subprocess.run(
            [*resolved, "--version"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "(version unknown)"
    return done.stdout.strip() or "(version unknown)"


class SrtBackend(ProcessBackend):
    """``ProcessBackend`` whose interpreters run inside srt. Raises ``SandboxUnavailableError`` when srt does not
    work here: there is no unisolated fallback of this kind (that is ``process`` with ``allow_unisolated``)."""

    kind = "srt"

    def __init__(
        self,
        limits: SandboxLimits,
        settings: SrtSettings | None = None,
        *,
        config_file: Path | None = None,
        warm_pool: int = 0,
        warm_max_age_s: float = 300.0,
    ) -> None:
        settings = settings or SrtSettings()
        usable, self.srt_reason = srt_status(settings.command)
        if not usable:
            raise SandboxUnavailableError(self.srt_reason)
        resolved = _resolve(settings.command) or list(settings.command)
        super().__init__(
            limits,
            warm_pool=warm_pool,
            warm_max_age_s=warm_max_age_s,
            wrapper=SrtWrapper(resolved, config_file),
        )
        self.isolated = True


def probe(config: Config) -> tuple[bool, str]:
    """Whether srt sandboxes programs here (tried for real once), and which one or why not."""
    return srt_status(parse_srt_settings(config.sandbox.srt).command)


def create_backend(config: Config) -> SrtBackend:
    """The ``srt`` backend for a config; raises ``SandboxUnavailableError`` saying why when srt cannot run here."""
    return SrtBackend(
        sandbox_limits(config),
        parse_srt_settings(config.sandbox.srt),
        config_file=config.source,
        warm_pool=config.sandbox.warm_pool,
        warm_max_age_s=config.sandbox.warm_max_age_s,
    )

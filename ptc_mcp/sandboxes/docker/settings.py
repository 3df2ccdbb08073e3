"""``sandbox.docker`` settings and the hardened container they describe.

Every setting is safe by default; ``docs/backends/docker.md`` says why each flag is there.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ptc_mcp.errors import ConfigError, validation_problems
from ptc_mcp.sandboxes.base import SandboxLimits
from ptc_mcp.sandboxes.protocol import PYTHON_ARGS

DEFAULT_IMAGE = "python:3.12-slim"
MOVED = {"warm_pool": "sandbox.warm_pool", "warm_max_age_s": "sandbox.warm_max_age_s"}
"""Keys that ``sandbox.docker`` once had, now one setting for every backend: a config with them is told where."""
SCRATCH = "/tmp"
LABEL_PREFIX = "ptc-mcp."
SANDBOX_ENV = {
    "HOME": SCRATCH,
    "TMPDIR": SCRATCH,
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONIOENCODING": "utf-8",
    "MALLOC_ARENA_MAX": "2",
}
"""The whole environment the sandbox gets from ptc-mcp (the image's own ``ENV`` stays; nothing of the host's)."""


class DockerSettings(BaseModel):
    """The ``sandbox.docker`` object of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(default=DEFAULT_IMAGE, min_length=1)
    """Any image with ``python3`` (3.9+) on its ``PATH``; see ``sandbox/Dockerfile`` for a hardened one."""
    pull: Literal["missing", "never"] = "missing"
    """Pull the image when the engine lacks it, or never (fail with a message instead)."""
    python: str = Field(default="python3", min_length=1)
    user: str = Field(default="65534:65534", pattern=r"^[0-9]+:[0-9]+$")
    """uid:gid inside the container; numeric so no ``/etc/passwd`` lookup is needed. Root (0) is refused."""
    memory_mb: int | None = Field(default=None, ge=32)
    """Memory limit, swap included (no swap). Default: ``limits.memory_mb``."""
    cpus: float = Field(default=1.0, gt=0, le=256)
    pids_limit: int | None = Field(default=None, ge=8)
    """Processes and threads in the container. Default: ``sandbox.max_processes``."""
    scratch_mb: int | None = Field(default=None, ge=1)
    """Size of the ``/tmp`` and ``/dev/shm`` tmpfs mounts. Default: ``sandbox.scratch_mb``."""
    scratch_exec: bool = False
    """Allow executing files written to ``/tmp`` (``noexec`` by default)."""
    network: str = "none"
    """Docker network mode. ``none`` is the only isolating value; anything else gives the program a network."""
    read_only: bool = True
    cap_add: list[str] = Field(default_factory=list)
    """Capabilities to add back after dropping all of them (none by default)."""
    no_new_privileges: bool = True
    init: bool = True
    runtime: str | None = None
    """An OCI runtime registered with the engine, for example ``runsc`` (gVisor) for a second wall."""
    security_opt: list[str] = Field(default_factory=list)
    """Extra ``--security-opt`` values (a seccomp or AppArmor profile)."""
    labels: dict[str, str] = Field(default_factory=dict)
    direct_channel: bool = True
    """On a local engine (a unix socket), speak the protocol over a unix socket bind-mounted into the container
    (see ``channel.py``); off, or where the runtime cannot connect: over the engine's attach stream."""
    start_timeout_s: float = Field(default=30.0, gt=0)
    api_timeout_s: float = Field(default=60.0, gt=0)

    def validate_user(self) -> None:
        uid, gid = (int(part) for part in self.user.split(":"))
        if uid == 0 or gid == 0:
            raise ConfigError("sandbox.docker.user: the sandbox must not run as root (uid or gid 0)")


def parse_docker_settings(raw: dict[str, Any]) -> DockerSettings:
    """Validate ``sandbox.docker``; raises ``ConfigError`` naming ``sandbox.docker.<key>``."""
    moved = [f"sandbox.docker.{key} is now {MOVED[key]} (one setting for every backend)" for key in raw if key in MOVED]
    if moved:
        raise ConfigError("invalid config: " + "; ".join(moved))
    try:
        settings = DockerSettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("invalid config: " + validation_problems(exc, under="sandbox.docker")) from None
    settings.validate_user()
    for key in settings.labels:
        if key.startswith(LABEL_PREFIX):
            raise ConfigError(f"sandbox.docker.labels: the {LABEL_PREFIX}* labels are ptc-mcp's own ({key!r})")
    return settings


def container_spec(settings: DockerSettings, limits: SandboxLimits, labels: dict[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``APIClient.create_container`` (``host_config`` as a plain dict of host options)."""
    memory_mb = settings.memory_mb or limits.memory_mb
    scratch_mb = settings.scratch_mb or limits.scratch_mb
    scratch_flags = "exec" if settings.scratch_exec else "noexec"
    security_opt = [*settings.security_opt]
    if settings.no_new_privileges:
        security_opt.append("no-new-privileges:true")
    host_config: dict[str, Any] = {
        "network_mode": settings.network,
        "read_only": settings.read_only,
        "tmpfs": {SCRATCH: f"rw,nosuid,nodev,{scratch_flags},size={scratch_mb}m,mode=1777"},
        "shm_size": f"{scratch_mb}m",
        "ipc_mode": "private",
        "cap_drop": ["ALL"],
        "cap_add": list(settings.cap_add) or None,
        "security_opt": security_opt,
        "mem_limit": f"{memory_mb}m",
        "memswap_limit": f"{memory_mb}m",
        "nano_cpus": int(settings.cpus * 1e9),
        "pids_limit": settings.pids_limit or limits.max_processes,
        "ulimits": [
            {"Name": "nofile", "Soft": limits.max_open_files, "Hard": limits.max_open_files},
            {"Name": "fsize", "Soft": limits.max_file_size_mb << 20, "Hard": limits.max_file_size_mb << 20},
            {"Name": "core", "Soft": 0, "Hard": 0},
        ],
        "init": settings.init,
        "runtime": settings.runtime,
        # The protocol and the program's output must not be kept by the engine's log driver.
        "log_config": {"Type": "none", "Config": {}},
    }
    return {
        "image": settings.image,
        "command": [settings.python, *PYTHON_ARGS],
        "user": settings.user,
        "environment": dict(SANDBOX_ENV),
        "working_dir": SCRATCH,
        "labels": {**settings.labels, **labels},
        # Not detached with stdin open means StdinOnce: when the server's attach connection goes (even on
        # SIGKILL of the server), the container's stdin closes and the runtime exits.
        "stdin_open": True,
        "detach": False,
        "tty": False,
        "network_disabled": settings.network == "none",
        # The SDK would copy proxy settings from the host's ~/.docker/config.json into the environment.
        "use_config_proxy": False,
        "host_config": host_config,
    }

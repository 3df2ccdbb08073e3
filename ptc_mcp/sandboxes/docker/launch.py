"""Blocking Docker engine calls of the docker backend (run them in a worker thread, never on the event loop).

``launch`` creates a hardened container, attaches to its stdio *before* starting it (so no byte is missed),
starts it, sends the runtime and waits for ``ready``. ``reap_stale`` removes containers left by a server instance
that died; every container carries labels saying which instance, process and host own it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors

from ptc_mcp.errors import SandboxFailure
from ptc_mcp.sandboxes.docker.channel import ChannelListener, Connected, handshake, open_listener
from ptc_mcp.sandboxes.docker.settings import DockerSettings
from ptc_mcp.sandboxes.docker.stream import FrameDemux, raw_socket
from ptc_mcp.sandboxes.protocol import Ready, expect_ready, not_started, startup_payload

log = logging.getLogger(__name__)

INSTANCE_LABEL = "ptc-mcp.instance"
SESSION_LABEL = "ptc-mcp.session"
PID_LABEL = "ptc-mcp.pid"
PID_START_LABEL = "ptc-mcp.pid-start"
HOST_LABEL = "ptc-mcp.host"
CREATED_GRACE_S = 120.0
"""A container of another live instance may sit in ``created`` this long while it is being started."""
_ATTACH = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
_pull_lock = threading.Lock()


@dataclass
class Launched:
    """A started container whose runtime has said ``ready``."""

    container_id: str
    session_id: str
    handle: Any
    demux: FrameDemux
    ready: Ready
    channel: Connected | None = None
    """The direct channel (``channel.py``) the runtime connected, or ``None``: everything is on the attach stream."""
    started_at: float = field(default_factory=time.monotonic)


def process_start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks since boot): tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat.rsplit(b")", 1)[-1].split()[19].decode()


def owner_labels(instance_id: str) -> dict[str, str]:
    """The labels that say which server owns a container (no secret: never the MCP session handle)."""
    pid = os.getpid()
    return {
        INSTANCE_LABEL: instance_id,
        PID_LABEL: str(pid),
        PID_START_LABEL: process_start_time(pid) or "",
        HOST_LABEL: socket.gethostname(),
    }


def launch(
    api: Any, spec: dict[str, Any], settings: DockerSettings, labels: dict[str, str], *, direct: bool = False
) -> Launched:
    """Create, attach, start and handshake one container; removes it again on any failure. ``direct``: offer the
    runtime the direct channel (``channel.py``; only for a local engine)."""
    session_id = secrets.token_hex(8)
    spec = {**spec, "labels": {**spec["labels"], **labels, SESSION_LABEL: session_id}}
    host_options = dict(spec.pop("host_config"))
    channel: ChannelListener | None = None
    if direct:
        channel = open_listener(settings.user)
        binds, environment = channel.container_options()
        host_options["binds"] = binds
        spec["environment"] = {**spec["environment"], **environment}
    try:
        container_id = _create(api, spec, host_options, settings)
    except BaseException:
        if channel is not None:
            channel.close()
        raise
    try:
        handle = api.attach_socket(container_id, params=dict(_ATTACH))
        demux = FrameDemux()
        sock = raw_socket(handle)
        api.start(container_id)
        connected: Connected | None = None
        try:
            line, connected = handshake(sock, demux, startup_payload(), settings.start_timeout_s, channel)
        except TimeoutError:
            raise not_started(settings.start_timeout_s) from None
        except (EOFError, OSError):
            detail = demux.stderr_tail.decode("utf-8", "replace").strip()[-500:]
            raise SandboxFailure(f"the container exited before its runtime started: {detail or 'no output'}") from None
        try:
            ready = expect_ready(line)
        except BaseException:
            if connected is not None:
                connected.close()
            raise
        return Launched(container_id, session_id, handle, demux, ready, connected)
    except BaseException as exc:
        if channel is not None:
            channel.close()
        remove(api, container_id)
        if isinstance(exc, docker.errors.APIError):
            raise SandboxFailure(f"the Docker engine refused to start the sandbox: {exc.explanation or exc}") from None
        raise


def _create(api: Any, spec: dict[str, Any], host_options: dict[str, Any], settings: DockerSettings) -> str:
    for attempt in range(2):
        try:
            created = api.create_container(host_config=api.create_host_config(**host_options), **spec)
            return str(created["Id"])
        except docker.errors.ImageNotFound:
            if settings.pull == "never" or attempt:
                raise SandboxFailure(
                    f"the sandbox image {settings.image!r} is not on the Docker engine: build or pull it "
                    '(see docs/backends/docker.md), or set "sandbox": {"docker": {"pull": "missing"}}'
                ) from None
            _pull(api, settings.image)
        except docker.errors.APIError as exc:
            raise SandboxFailure(f"the Docker engine refused to create the sandbox: {exc.explanation or exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _pull(api: Any, image: str) -> None:
    with _pull_lock:
        log.info("pulling the sandbox image %s", image)
        repository, separator, tag = image.rpartition(":")
        if not separator or "/" in tag:
            repository, tag = image, "latest"
        try:
            api.pull(repository, tag=tag)
        except docker.errors.APIError as exc:
            raise SandboxFailure(f"cannot pull the sandbox image {image!r}: {exc.explanation or exc}") from None


def remove(api: Any, container_id: str) -> None:
    """Kill and remove a container; quiet when it is already gone."""
    try:
        api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            log.warning("cannot remove sandbox container %s: %s", container_id[:12], exc)


def exit_state(api: Any, container_id: str, wait_s: float = 2.0) -> dict[str, Any] | None:
    """The container's ``State`` once it stopped running (``None`` if it is gone)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state: dict[str, Any] = api.inspect_container(container_id)["State"]
        except docker.errors.NotFound:
            return None
        if not state.get("Running") or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def reap_stale(api: Any, own_instance: str, *, include_own: bool = False) -> int:
    """Remove containers whose owning instance is gone (and this instance's own, at shutdown); returns how many."""
    host = socket.gethostname()
    removed = 0
    for summary in api.containers(all=True, filters={"label": INSTANCE_LABEL}):
        labels: dict[str, str] = summary.get("Labels") or {}
        own = labels.get(INSTANCE_LABEL) == own_instance
        if (own and include_own) or (not own and _orphaned(summary, labels, host)):
            remove(api, summary["Id"])
            removed += 1
    return removed


def _orphaned(summary: dict[str, Any], labels: dict[str, str], host: str) -> bool:
    if labels.get(HOST_LABEL) == host and not _owner_alive(labels):
        return True
    state = summary.get("State")
    if state == "running":
        return False  # another live server's (its attach connection keeps stdin open; if it dies, this exits)
    if state == "created":
        return time.time() - float(summary.get("Created", 0)) > CREATED_GRACE_S
    return True


def _owner_alive(labels: dict[str, str]) -> bool:
    try:
        pid = int(labels.get(PID_LABEL, ""))
    except ValueError:
        return False
    started = process_start_time(pid)
    return started is not None and started == labels.get(PID_START_LABEL)


def engine_client(timeout_s: float) -> docker.DockerClient:
    """A client from ``DOCKER_HOST``/``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH`` (or the local socket), pinged."""
    client = docker.from_env(timeout=int(timeout_s))
    client.ping()
    return client

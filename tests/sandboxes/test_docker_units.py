"""The docker backend's parts that need no engine: settings validation, the container spec, frame demultiplexing,
the direct channel's handshake (over real unix sockets)."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from ptc_mcp.errors import ConfigError, SandboxFailure
from ptc_mcp.sandboxes.base import SandboxLimits
from ptc_mcp.sandboxes.docker.channel import SOCKET_NAME, ChannelListener, handshake, open_listener
from ptc_mcp.sandboxes.docker.launch import owner_labels, process_start_time
from ptc_mcp.sandboxes.docker.settings import SANDBOX_ENV, container_spec, parse_docker_settings
from ptc_mcp.sandboxes.docker.stream import FrameDemux


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", kind, len(payload)) + payload


def test_unknown_docker_settings_are_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"sandbox\.docker\.imag\b"):
        parse_docker_settings({"imag": "python:3.12"})


def test_bad_docker_values_are_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"sandbox\.docker\.cpus"):
        parse_docker_settings({"cpus": 0})
    with pytest.raises(ConfigError, match=r"sandbox\.docker\.start_timeout_s"):
        parse_docker_settings({"start_timeout_s": 0})


def test_the_old_docker_warm_pool_keys_are_refused_naming_the_shared_ones() -> None:
    with pytest.raises(ConfigError, match=r"sandbox\.docker\.warm_pool is now sandbox\.warm_pool"):
        parse_docker_settings({"warm_pool": 2})
    with pytest.raises(ConfigError, match=r"sandbox\.warm_max_age_s"):
        parse_docker_settings({"warm_max_age_s": 60})


def test_a_root_user_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"sandbox\.docker\.user"):
        parse_docker_settings({"user": "0:0"})
    with pytest.raises(ConfigError, match=r"sandbox\.docker\.user"):
        parse_docker_settings({"user": "root"})


def test_own_labels_cannot_be_overridden_from_the_config() -> None:
    with pytest.raises(ConfigError, match=r"sandbox\.docker\.labels"):
        parse_docker_settings({"labels": {"ptc-mcp.instance": "x"}})


def test_the_default_container_is_hardened() -> None:
    limits = SandboxLimits(memory_mb=256, max_processes=32, max_open_files=128, scratch_mb=16)
    spec = container_spec(parse_docker_settings({}), limits, owner_labels("abc"))
    host = spec["host_config"]
    assert spec["image"] == "python:3.12-slim"
    assert spec["user"] == "65534:65534"
    assert spec["environment"] == SANDBOX_ENV
    assert spec["stdin_open"] and not spec["tty"] and not spec["detach"]
    assert spec["use_config_proxy"] is False
    assert spec["labels"]["ptc-mcp.instance"] == "abc"
    assert host["network_mode"] == "none"
    assert host["read_only"] is True
    assert host["cap_drop"] == ["ALL"] and host["cap_add"] is None
    assert "no-new-privileges:true" in host["security_opt"]
    assert host["mem_limit"] == host["memswap_limit"] == "256m"
    assert host["pids_limit"] == 32
    assert host["nano_cpus"] == 1_000_000_000
    assert host["init"] is True
    assert host["tmpfs"]["/tmp"] == "rw,nosuid,nodev,noexec,size=16m,mode=1777"
    assert {"Name": "nofile", "Soft": 128, "Hard": 128} in host["ulimits"]
    assert host["log_config"]["Type"] == "none"


def test_docker_settings_override_the_shared_limits() -> None:
    settings = parse_docker_settings({"memory_mb": 1024, "pids_limit": 100, "scratch_mb": 8, "cpus": 0.5})
    host = container_spec(settings, SandboxLimits(), {})["host_config"]
    assert host["mem_limit"] == host["memswap_limit"] == "1024m"
    assert host["pids_limit"] == 100
    assert host["nano_cpus"] == 500_000_000
    assert "size=8m" in host["tmpfs"]["/tmp"]


def test_owner_labels_name_this_process() -> None:
    import os

    labels = owner_labels("inst")
    assert labels["ptc-mcp.pid"] == str(os.getpid())
    assert labels["ptc-mcp.pid-start"] == process_start_time(os.getpid())
    assert "ptc-mcp.session" not in labels


def test_frames_split_across_reads_are_reassembled() -> None:
    demux = FrameDemux()
    data = frame(1, b'{"type":"ready"}\n') + frame(2, b"warning\n") + frame(1, b"tail")
    for i in range(len(data)):
        demux.feed(data[i : i + 1])
    assert demux.take_line() == b'{"type":"ready"}\n'
    assert demux.take_line() is None
    assert bytes(demux.stdout) == b"tail"
    assert bytes(demux.stderr_tail) == b"warning\n"
    assert demux.stderr_bytes == len(b"warning\n")


def test_stderr_frames_go_to_the_listener_when_there_is_one() -> None:
    demux = FrameDemux()
    seen: list[bytes] = []
    demux.on_stderr = seen.append
    demux.feed(frame(2, b"a") + frame(1, b"x") + frame(2, b"b"))
    assert seen == [b"a", b"b"]
    assert bytes(demux.stdout) == b"x"
    assert not demux.stderr_tail


def test_the_stderr_tail_is_bounded() -> None:
    demux = FrameDemux()
    for _ in range(100):
        demux.feed(frame(2, b"x" * 1000))
    assert len(demux.stderr_tail) == 4096


def test_an_absurd_frame_size_is_a_sandbox_failure() -> None:
    with pytest.raises(SandboxFailure):
        FrameDemux().feed(struct.pack(">BxxxI", 1, 2**31))


def _own_listener() -> ChannelListener:
    return open_listener(f"{os.getuid()}:{os.getgid()}")


def _connect(listener: ChannelListener) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(os.path.join(listener.directory, SOCKET_NAME))
    return client


def test_the_direct_channel_takes_the_protocol_then_the_raw_output_and_nothing_more() -> None:
    listener = _own_listener()
    attach, engine = socket.socketpair()
    protocol, raw = _connect(listener), _connect(listener)
    protocol.sendall(b'{"type": "ready"}\n')
    try:
        line, connected = handshake(attach, FrameDemux(), b"payload", 5.0, listener)
        assert line == b'{"type": "ready"}\n' and connected is not None
        raw.sendall(b"from fd 2")
        assert connected.raw.recv(100) == b"from fd 2"  # the second connection is the raw output's
        assert engine.recv(100) == b"payload"  # the start-up payload still goes over the attach stream
        with pytest.raises(FileNotFoundError):  # the socket is gone: nothing connects a third time
            _connect(listener)
        assert not os.path.exists(listener.parent)
        connected.close()
    finally:
        for sock in (attach, engine, protocol, raw):
            sock.close()


def test_a_runtime_that_connected_once_and_said_ready_on_stdout_is_refused() -> None:
    listener = _own_listener()
    attach, engine = socket.socketpair()
    protocol = _connect(listener)
    engine.sendall(frame(1, b'{"type": "ready"}\n'))
    try:
        with pytest.raises(SandboxFailure, match="connected the direct channel once"):
            handshake(attach, FrameDemux(), b"payload", 5.0, listener)
        assert protocol.recv(1) == b""  # the host closed the connection it had accepted
    finally:
        for sock in (attach, engine, protocol):
            sock.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="connecting as another uid than the container's needs root here")
def test_a_connection_from_another_uid_than_the_containers_is_refused() -> None:
    listener = open_listener("65534:65534")  # the container's uid; this test connects as root
    attach, engine = socket.socketpair()
    intruder = _connect(listener)
    try:
        with pytest.raises(SandboxFailure, match="connected by uid 0, not the container's"):
            handshake(attach, FrameDemux(), b"payload", 5.0, listener)
        assert not os.path.exists(listener.parent)
    finally:
        for sock in (attach, engine, intruder):
            sock.close()

"""SECURITY.md, "Network": no network from the sandbox, proven without sending a packet anywhere but loopback.

Every program here first reads the interfaces and the routing tables. Only a program that has seen no interface
but ``lo`` and no route but loopback's own tries a ``connect()`` (to the cloud metadata address, to show the error
type); a program that sees a route reports it and connects nowhere, and the test fails.
"""

from __future__ import annotations

import socket

import pytest

from tests.security.conftest import Secured, error_type

pytestmark = pytest.mark.anyio

NO_ROUTE_THEN_CONNECT = """
import errno, socket

def routes():
    found = []
    with open("/proc/net/route") as table:
        found += [line.split()[0] for line in table.read().splitlines()[1:] if line.strip()]
    try:
        with open("/proc/net/ipv6_route") as table:
            found += [line.split()[-1] for line in table.read().splitlines() if line.strip()]
    except FileNotFoundError:  # IPv6 disabled: no IPv6 routes at all
        pass
    return [device for device in found if device != "lo"]  # loopback's own routes stay inside the sandbox

interfaces = sorted(name for _, name in socket.if_nameindex())
outside = routes()
outcome = {"interfaces": interfaces, "routes": outside, "connect": "not attempted"}
if interfaces == ["lo"] and not outside:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(("169.254.169.254", 80))
        outcome["connect"] = "connected"
    except OSError as exc:
        outcome["connect"] = errno.errorcode.get(exc.errno, str(exc.errno))
    finally:
        probe.close()
outcome
"""


async def test_the_sandbox_has_only_loopback_and_no_route_so_connect_fails_before_a_packet_exists(
    secured: Secured,
) -> None:
    result = await secured.run(NO_ROUTE_THEN_CONNECT)
    assert result["status"] == "ok", result
    outcome = result["result"]
    assert outcome["interfaces"] == ["lo"], outcome
    assert outcome["routes"] == [], outcome
    assert outcome["connect"] == "ENETUNREACH"
    await secured.assert_serving()


HOST_LOOPBACK = """
import errno, socket
outcome = {}
for family, address in ((socket.AF_INET, ("127.0.0.1", {port})), (socket.AF_UNIX, "\\0{abstract}")):
    probe = None
    try:
        probe = socket.socket(family, socket.SOCK_STREAM)  # srt's seccomp filter refuses new AF_UNIX sockets
        probe.settimeout(2)
        probe.connect(address)
        outcome[str(family)] = "connected"
    except OSError as exc:
        outcome[str(family)] = errno.errorcode.get(exc.errno, str(exc.errno))
    finally:
        if probe is not None:
            probe.close()
outcome
"""


async def test_listeners_on_the_hosts_loopback_are_unreachable(secured: Secured) -> None:
    """A TCP listener on the host's 127.0.0.1 (like the server's own HTTP port) and an abstract unix socket."""
    abstract = f"ptc-mcp-security-{id(secured):x}"
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix,
    ):
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(8)
        unix.bind("\0" + abstract)
        unix.listen(8)
        code = HOST_LOOPBACK.replace("{port}", str(tcp.getsockname()[1])).replace("{abstract}", abstract)
        result = await secured.run(code)
        tcp.setblocking(False)
        unix.setblocking(False)
        for listener in (tcp, unix):
            with pytest.raises(BlockingIOError):
                listener.accept()  # nobody got through
    assert result["status"] == "ok", result
    outcome = result["result"]
    assert outcome[str(int(socket.AF_INET))] in ("ECONNREFUSED", "ENETUNREACH"), outcome
    assert outcome[str(int(socket.AF_UNIX))] in ("ECONNREFUSED", "EPERM"), outcome
    await secured.assert_serving()


RAW_SOCKETS = """
import errno, socket
outcome = {}
kinds = {
    "raw-icmp": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
    "raw-ip": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW),
    "packet": (socket.AF_PACKET, socket.SOCK_RAW, 0x0300),
}
for name, args in kinds.items():
    try:
        socket.socket(*args).close()
        outcome[name] = "created"
    except OSError as exc:
        outcome[name] = errno.errorcode.get(exc.errno, str(exc.errno))
outcome
"""


async def test_raw_and_packet_sockets_are_not_permitted(secured: Secured) -> None:
    result = await secured.run(RAW_SOCKETS)
    assert result["status"] == "ok", result
    assert result["result"] == {"raw-icmp": "EPERM", "raw-ip": "EPERM", "packet": "EPERM"}
    await secured.assert_serving()


async def test_an_uncaught_network_error_is_a_program_error(secured: Secured) -> None:
    """Without a route the error is immediate and typed; the program sees an ordinary ``OSError``."""
    code = NO_ROUTE_THEN_CONNECT.replace('outcome["connect"] = errno.errorcode.get(exc.errno, str(exc.errno))', "raise")
    result = await secured.run(code)
    assert error_type(result) == "program_error", result
    assert result["error"]["exc_type"] == "OSError"
    assert "unreachable" in result["error"]["message"].lower()

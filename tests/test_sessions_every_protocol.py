"""Sessions on every protocol version: a stdio connection owns one implicit session, also on 2026-07-28; handles
keep working and cross connections; a result that started a session nobody keeps says how to keep it.

Real clients: the official Python SDK in both modes (``legacy``: the handshake era; ``2026-07-28``: current) over
real stdio against ``ptc-mcp serve``, and in process for the cross-connection case.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from ptc_mcp.server import build_server
from tests.conftest import OpenTestApp
from tests.mcp_calls import execute, structured
from tests.test_server_transports import WAIT_S, serving, write_config

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]


def text(result: object) -> str:
    return result.content[0].text  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("mode", MODES)
async def test_a_stdio_connection_keeps_its_variables_on_every_protocol_version(tmp_path: Path, mode: str) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "ptc_mcp", "serve", "--config", str(write_config(tmp_path))]
    )
    with (tmp_path / "stderr.txt").open("w+") as errlog:
        with anyio.fail_after(WAIT_S):
            async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
                first = await execute(client, "n = 21")
                second = await execute(client, "n * 2")
                handle = structured(first)["session"]
                by_handle = await execute(client, "n + 1", session=handle)
                protocol = client.protocol_version
        errlog.seek(0)
        stderr = errlog.read()
    assert (protocol == "2026-07-28") == (mode == "2026-07-28")
    assert structured(second)["result"] == 42
    assert structured(second)["session"] == handle  # one session, no new interpreter
    assert structured(by_handle)["result"] == 22
    assert "new session" not in text(first)
    # `serve` said once, at the default log level, that it is ready and what it serves.
    [ready] = [line for line in stderr.splitlines() if "ptc-mcp ready" in line]
    assert "stdio" in ready and "sandbox process" in ready and "1 server" in ready and "3 tools" in ready


async def test_handles_cross_connections_and_protocol_versions(open_test_app: OpenTestApp) -> None:
    async with open_test_app() as app:
        with anyio.fail_after(WAIT_S):
            async with (
                Client(build_server(app, one_client=True), mode="2026-07-28") as current,
                Client(build_server(app), mode="legacy") as legacy,
            ):
                started = await execute(current, "secret = 'mine'")
                kept = await execute(current, "secret")
                other = await execute(legacy, "secret")
                crossed = await execute(legacy, "secret", session=structured(started)["session"])
    assert structured(kept)["result"] == "mine"
    assert structured(other)["error"]["type"] == "program_error"  # the legacy connection has its own session
    assert structured(crossed)["result"] == "mine"


async def test_a_handle_continues_its_session_from_a_new_connection_after_the_first_one_closed(tmp_path: Path) -> None:
    # Clients that open a connection per call (and models that pass the handle a result showed them) keep their
    # variables: a connection's session outlives it as an unclaimed one (sandbox.unclaimed_session_idle_s).
    async with serving(write_config(tmp_path), "http") as base:
        with anyio.fail_after(WAIT_S):
            async with Client(f"{base}/mcp", mode="legacy") as first:
                handle = structured(await execute(first, "n = 21"))["session"]
            async with Client(f"{base}/mcp", mode="legacy") as second:
                kept = await execute(second, "n * 2", session=handle)
                own = await execute(second, "n")  # the new connection's own session is a fresh one
    assert structured(kept)["result"] == 42
    assert structured(own)["error"]["type"] == "program_error"


async def test_over_stateless_http_a_new_session_says_how_to_keep_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, remote={"stateless_http": True})
    async with serving(config, "http") as base:
        with anyio.fail_after(WAIT_S):
            async with Client(f"{base}/mcp", mode="legacy") as client:
                first = await execute(client, "n = 21")
                handle = structured(first)["session"]
                kept = await execute(client, "n * 2", session=handle)
    assert "new session" in text(first) and "pass session=" in text(first)
    assert structured(kept)["result"] == 42
    assert "new session" not in text(kept)


async def test_serve_over_http_says_it_is_ready_with_its_address(tmp_path: Path) -> None:
    log = tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "ptc_mcp", "serve", "--config", str(write_config(tmp_path))]
    with log.open("w") as errlog:
        process = await anyio.open_process(
            [*command, "--transport", "http", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )
        try:
            with anyio.fail_after(WAIT_S):
                while "ptc-mcp ready" not in log.read_text():
                    assert process.returncode is None, log.read_text()
                    await anyio.sleep(0.05)  # a bounded poll on the condition
        finally:
            process.terminate()
            with anyio.fail_after(30):
                await process.wait()
            await process.aclose()
    [ready] = [line for line in log.read_text().splitlines() if "ptc-mcp ready" in line]
    assert "http on http://127.0.0.1:" in ready and "/mcp" in ready and "sandbox process" in ready


async def test_a_current_protocol_stdio_client_that_can_answer_questions_keeps_its_variables_too(
    tmp_path: Path,
) -> None:
    # A client declaring elicitation runs programs through input exchanges at 2026-07-28; the session binds the same.
    async def never_asked(context: object, params: object) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "ptc_mcp", "serve", "--config", str(write_config(tmp_path))]
    )
    with anyio.fail_after(WAIT_S):
        async with Client(params, mode="2026-07-28", elicitation_callback=never_asked) as client:
            first = await execute(client, "n = 21")
            second = await execute(client, "n * 2")
    assert structured(second)["result"] == 42
    assert structured(second)["session"] == structured(first)["session"]

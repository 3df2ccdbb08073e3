"""The host side of the host↔runtime protocol against a hostile runtime: it never crashes or confuses the server.

Everything a runtime sends is untrusted (a program can write to the runtime's protocol descriptor). The parser is
checked with hypothesis on its own; then a fake runtime process (``fake_runtime.py``) writes hostile lines over
real pipes to the real ``RuntimeChannel``, driven by the real ``Executor``: every outcome is a typed result that
serializes as an MCP result, the server's memory stays bounded, and the fake's process is gone afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, get_args

import anyio
import pytest
from anyio.abc import Process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptc_mcp.bridge import ToolBridge
from ptc_mcp.catalog.policy import ToolPolicy
from ptc_mcp.config import LimitsConfig
from ptc_mcp.errors import ErrorType
from ptc_mcp.executor import ExecuteRequest, Executor
from ptc_mcp.output import OutputCollector
from ptc_mcp.sandboxes.base import OutputSink, RunReport, RunRequest, ToolCallHandler
from ptc_mcp.sandboxes.protocol import (
    MAX_MESSAGE_BYTES,
    PYTHON_ARGS,
    Call,
    Done,
    Output,
    ProtocolError,
    Ready,
    parse_runtime_message,
)
from ptc_mcp.sandboxes.stream import MessagePipe, RuntimeChannel
from tests.conftest import NoTools, start_time
from tests.security.conftest import Secured

pytestmark = pytest.mark.anyio

FAKE_RUNTIME = Path(__file__).with_name("fake_runtime.py")
CONTRACT = set(get_args(ErrorType))
RUN = "{RUN}"

# --- the parser on its own ---------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["ready", "call", "output", "done", "result", "run", "", "DONE"]) | st.text()},
    optional={
        "id": st.text(max_size=20) | st.integers(),
        "call": st.integers() | st.text(max_size=4),
        "tool": st.text(max_size=40),
        "args": json_values,
        "stream": st.sampled_from(["stdout", "stderr", "stdin"]) | st.text(max_size=8),
        "data": st.text() | st.integers(),
        "ok": st.booleans() | st.integers(),
        "result": json_values,
        "error": json_values,
        "python": st.text(max_size=40),
        "pid": st.integers() | st.text(max_size=4),
        "tool_calls": st.integers(),
        "output_dropped": st.integers(),
    },
)


def _nested(depth: int) -> bytes:
    return b'{"type":"done","id":"r","ok":true,"result":' + b"[" * depth + b"]" * depth + b"}"


@given(
    st.binary(max_size=512)
    | json_values.map(lambda v: json.dumps(v).encode())
    | message_like.map(lambda m: json.dumps(m).encode())
    | st.integers(min_value=1, max_value=200_000).map(_nested)
)
@settings(max_examples=400, deadline=None)
def test_the_parser_returns_a_message_or_raises_protocol_error_for_any_line(line: bytes) -> None:
    try:
        message = parse_runtime_message(line)
    except ProtocolError:
        return
    assert isinstance(message, Ready | Call | Output | Done)


def test_the_parser_refuses_an_oversized_line_without_decoding_it() -> None:
    with pytest.raises(ProtocolError):
        parse_runtime_message(b"{" + b" " * MAX_MESSAGE_BYTES + b"}")


# --- a fake runtime over real pipes, through the real executor ----------------------------------------------------


class FakeRuntimeSession:
    """A ``SandboxSession`` whose interpreter is ``fake_runtime.py`` replaying ``lines``."""

    def __init__(self, process: Process, channel: RuntimeChannel, scenario: Path) -> None:
        self.process = process
        self.channel = channel
        self.scenario = scenario
        self._closed = False

    @property
    def alive(self) -> bool:
        return not self._closed and self.process.returncode is None

    async def run(self, request: RunRequest, call_tool: ToolCallHandler, output: OutputSink) -> RunReport:
        return await self.channel.run(request, call_tool, output)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            self.process.kill()
            with anyio.fail_after(10):
                await self.process.wait()
            await self.process.aclose()
            self.channel.close()
            self.scenario.unlink(missing_ok=True)


READERS = ["pipe", "stream"]
"""How the host reads the runtime's messages: a ``MessagePipe`` (process, docker's direct channel) or a byte
stream read by the run's task (docker's attach stream)."""


class FakeRuntimeBackend:
    kind = "fake"
    isolated = True

    def __init__(self, reader: str = "pipe") -> None:
        self.reader = reader
        self.lines: list[bytes] = []
        self.sessions: list[FakeRuntimeSession] = []

    async def start_session(self) -> FakeRuntimeSession:
        fd, name = tempfile.mkstemp(prefix="ptc-fake-runtime-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump([base64.b64encode(line).decode() for line in self.lines], handle)
        argv = [sys.executable, str(FAKE_RUNTIME), name]
        if self.reader == "pipe":
            messages_read, messages_write = os.pipe()
            try:
                process = await anyio.open_process(
                    argv, stdout=messages_write, stderr=subprocess.DEVNULL, start_new_session=True
                )
            finally:
                os.close(messages_write)
            assert process.stdin is not None
            channel = RuntimeChannel(process.stdin, MessagePipe(messages_read))
        else:
            process = await anyio.open_process(argv, stderr=subprocess.DEVNULL, start_new_session=True)
            assert process.stdin is not None and process.stdout is not None
            channel = RuntimeChannel(process.stdin, process.stdout)
        session = FakeRuntimeSession(process, channel, Path(name))
        self.sessions.append(session)
        await channel.start()
        return session

    async def aclose(self) -> None:
        for session in self.sessions:
            await session.aclose()


@asynccontextmanager
async def fake_executor(reader: str = "pipe") -> AsyncIterator[tuple[Executor, FakeRuntimeBackend]]:
    backend = FakeRuntimeBackend(reader)
    limits = LimitsConfig(timeout_s=10, max_output_bytes=4096, max_tool_calls=5)
    executor = Executor(backend, ToolBridge(NoTools(), ToolPolicy(["*"], [])), limits, stateless=True)
    try:
        async with executor:
            yield executor, backend
    finally:
        await backend.aclose()


def done(**fields: Any) -> bytes:
    return json.dumps({"type": "done", "id": RUN, "ok": True, **fields}).encode() + b"\n"


def output(stream: str, data: str) -> bytes:
    return json.dumps({"type": "output", "id": RUN, "stream": stream, "data": data}).encode() + b"\n"


def call(number: Any, tool: str = "fx.echo", args: Any = None) -> bytes:
    message = {"type": "call", "id": RUN, "call": number, "tool": tool, "args": {} if args is None else args}
    return json.dumps(message).encode() + b"\n"


SCENARIOS: dict[str, tuple[list[bytes], ErrorType | None]] = {
    "malformed-json": ([b"{not json\n", done()], "sandbox_failure"),
    "stray-bytes": ([b"\x00\xff\x1b[2J garbage\n", done()], "sandbox_failure"),
    "wrong-types": ([b'{"type":"call","id":"{RUN}","call":"one","tool":7,"args":[]}\n', done()], "sandbox_failure"),
    "unknown-type": ([b'{"type":"exec","id":"{RUN}","code":"rm -rf /"}\n', done()], "sandbox_failure"),
    "not-an-object": ([b"[1, 2, 3]\n", done()], "sandbox_failure"),
    "deep-nesting": ([_nested(100_000).replace(b'"r"', b'"{RUN}"') + b"\n", done()], "sandbox_failure"),
    "oversized-line": ([b'{"type":"output","data":"' + b"x" * (MAX_MESSAGE_BYTES + 16) + b'"}\n'], "sandbox_failure"),
    "half-a-line-then-silence": ([b'{"type":"done"'], "timeout"),
    "other-runs-and-ready-ignored": (
        [
            b'{"type":"done","id":"someone-else","ok":false}\n',
            b'{"type":"ready","python":"3.0.0","pid":2}\n',
            b'{"type":"output","id":"stale","stream":"stdout","data":"not ours"}\n',
            output("stdout", "ours"),
            done(result=1),
        ],
        None,
    ),
    "calls-to-unknown-tools-and-duplicate-ids": (
        [call(1), call(1), call(2, "no.such"), call(3, "@describe", {"name": 5}), done()],
        None,
    ),
    "call-flood-past-the-budget": ([call(n) for n in range(1, 2001)] + [done()], "tool_call_limit"),
    "output-flood": ([output("stdout", "x" * 4000)] * 200 + [done()], "output_limit"),
    "hostile-output-text": ([output("stderr", "\x1b]0;pwned\x07\ud800\x00"), done()], None),
    "unknown-error-type": (
        [done(ok=False, error={"type": "root_shell", "message": "m", "exc_type": "X"})],
        "program_error",
    ),
    "negative-counters": ([done(tool_calls=-5)], "sandbox_failure"),
    "silence": ([], "timeout"),
}


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_a_hostile_runtime_gets_a_typed_result_and_never_crashes_the_server(name: str, reader: str) -> None:
    lines, expected = SCENARIOS[name]
    async with fake_executor(reader) as (executor, backend):
        backend.lines = lines
        timeout = 2 if expected == "timeout" else None
        with anyio.fail_after(60):
            result = await executor.execute(ExecuteRequest(code="hostile", timeout_s=timeout))
        assert result.error_type == expected, result
        serialized = result.to_call_tool_result().model_dump_json()
        serialized.encode("utf-8")
        assert "\x1b" not in result.stderr and "\x00" not in result.stderr
        assert len(result.stdout.encode()) + len(result.stderr.encode()) <= 4096 + 200
        assert result.tool_calls <= 6  # the budget (5) held: one more is refused and counted
        [session] = backend.sessions
        pid = session.process.pid
    assert not session.alive
    assert start_time(pid) is None  # the fake runtime is gone


@pytest.mark.parametrize("reader", READERS)
@given(
    st.lists(
        st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"") + b"\n")
        | message_like.map(lambda m: json.dumps({**m, "id": RUN} if "id" in m else m).encode() + b"\n"),
        max_size=8,
    ),
    st.booleans(),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_any_sequence_of_hostile_lines_ends_in_a_typed_result(
    reader: str, lines: list[bytes], finish: bool
) -> None:
    rss_before = _max_rss_mb()
    async with fake_executor(reader) as (executor, backend):
        backend.lines = [*lines, done()] if finish else lines
        with anyio.fail_after(60):
            result = await executor.execute(ExecuteRequest(code="hostile", timeout_s=1))
        assert result.status in ("ok", "error")
        assert result.error_type is None or result.error_type in CONTRACT
        result.to_call_tool_result().model_dump_json().encode("utf-8")
    assert _max_rss_mb() - rss_before < 64


def test_the_real_runtime_is_started_the_same_way() -> None:
    """The fake reads the same bootstrap the real runtime gets (size line, then source)."""
    assert PYTHON_ARGS[-1].startswith("import sys;b=sys.stdin.buffer;n=int(b.readline())")
    assert OutputCollector(4096).text("stdout") == ""


async def test_a_deeply_nested_value_from_a_real_program_comes_back_as_its_repr(secured: Secured) -> None:
    """The runtime keeps its messages within the parser's nesting bound; the server never recurses past its limit."""
    result = await secured.run("value = []\nfor _ in range(150):\n    value = [value]\nvalue")
    assert result["status"] == "ok", result
    assert result["result"] is None
    assert result["result_repr"].startswith("[[[[")
    deep_call = await secured.run("x = {}\nfor _ in range(500):\n    x = {'a': x}\nawait call_tool('no.such', x)")
    assert deep_call["status"] == "error"
    await secured.assert_serving()

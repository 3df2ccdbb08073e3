"""The host↔runtime protocol over a byte stream, shared by every backend that can hold a stream open.

A backend starts an interpreter with ``BOOTSTRAP`` and hands this module the interpreter's stdin and stdout as
anyio byte streams; ``RuntimeChannel`` sends the runtime, waits for ``ready`` and then runs programs.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any, get_args

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream
from anyio.streams.buffered import BufferedByteReceiveStream

from ptc_mcp.errors import ErrorType, SandboxFailure, raise_from_group
from ptc_mcp.sandboxes.base import OutputSink, RunReport, RunRequest, ToolCallHandler
from ptc_mcp.sandboxes.protocol import (
    MAX_MESSAGE_BYTES,
    Call,
    Done,
    Output,
    ProtocolError,
    Ready,
    answer_call,
    encode,
    parse_runtime_message,
    run_message,
)
from ptc_mcp.sandboxes.raw_output import RawOutput

BOOTSTRAP = (
    "import sys;b=sys.stdin.buffer;n=int(b.readline());"
    "exec(compile(b.read(n),'ptc_runtime','exec'),{'__name__':'__ptc_runtime__'})"
)
"""What the interpreter is started with: read the runtime's size, then the runtime, from stdin, and run it."""

PYTHON_ARGS = ["-I", "-u", "-c", BOOTSTRAP]
START_TIMEOUT_S = 30.0


@functools.cache
def runtime_source() -> bytes:
    """The runtime's source: from the installed wheel (``ptc_mcp/_sandbox``) or the source tree (``sandbox/``)."""
    packaged = resources.files("ptc_mcp").joinpath("_sandbox/ptc_runtime.py")
    if packaged.is_file():
        return packaged.read_bytes()
    return (Path(__file__).resolve().parents[2] / "sandbox" / "ptc_runtime.py").read_bytes()


class RuntimeChannel:
    """Speaks the protocol to one runtime over its stdin/stdout streams."""

    def __init__(
        self, send_stream: ByteSendStream, receive_stream: ByteReceiveStream, raw: RawOutput | None = None
    ) -> None:
        self.raw = raw
        """The interpreter's raw fd 1/2 output, when the backend reads it: the run waits for its end mark."""
        self._send_stream = send_stream
        self._receive = BufferedByteReceiveStream(receive_stream)
        self._send_lock = anyio.Lock()
        self._catalog_version: str | None = None
        self.python_version: str | None = None

    async def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Send the runtime and wait until it says ``ready``."""
        source = runtime_source()
        try:
            with anyio.fail_after(timeout_s):
                await self._send_stream.send(str(len(source)).encode("ascii") + b"\n" + source)
                message = await self._next_message()
        except TimeoutError:
            raise SandboxFailure(f"the sandbox's interpreter did not start within {timeout_s:g} s") from None
        if not isinstance(message, Ready):
            raise ProtocolError(f"expected 'ready' from the runtime, got {message.type!r}")
        self.python_version = message.python

    async def _send(self, message: dict[str, Any]) -> None:
        await self._send_line(encode(message))

    async def _send_line(self, line: bytes) -> None:
        async with self._send_lock:
            try:
                await self._send_stream.send(line)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise SandboxFailure(f"the sandbox stopped accepting input: {exc!r}") from None

    async def _next_message(self) -> Ready | Call | Output | Done:
        try:
            line = await self._receive.receive_until(b"\n", MAX_MESSAGE_BYTES)
        except anyio.IncompleteRead:
            raise SandboxFailure("the sandbox's interpreter exited") from None
        except anyio.DelimiterNotFound:
            raise ProtocolError(f"runtime sent a line longer than {MAX_MESSAGE_BYTES} bytes") from None
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise SandboxFailure("the sandbox's interpreter exited") from None
        return parse_runtime_message(line)

    async def run(self, request: RunRequest, call_tool: ToolCallHandler, output: OutputSink) -> RunReport:
        """Run one program to its ``done`` message, answering its tool calls concurrently."""
        fresh_catalog = request.catalog_version != self._catalog_version
        await self._send(run_message(request, with_catalog=fresh_catalog))
        self._catalog_version = request.catalog_version
        done: Done | None = None
        try:
            async with anyio.create_task_group() as calls:
                while done is None:
                    message = await self._next_message()
                    if isinstance(message, Ready) or message.id != request.run_id:
                        continue  # stray or stale: never taken for this run's protocol
                    if isinstance(message, Call):
                        calls.start_soon(self._answer, request.run_id, message, call_tool)
                    elif isinstance(message, Output):
                        output.write(message.stream, message.data)
                    else:
                        done = message
                calls.cancel_scope.cancel()  # calls the program left unawaited
        except BaseExceptionGroup as group:
            raise_from_group(group)
        if done is None:  # pragma: no cover - the loop only ends with a done message or an exception
            raise SandboxFailure("the run ended without a done message")
        if self.raw is not None:
            await self.raw.wait_for_end(request.run_id)
        return report_from_done(done)

    async def cancel(self, run_id: str) -> None:
        """Ask the runtime to cancel the run (the caller still enforces a hard deadline)."""
        await self._send({"type": "cancel", "id": run_id})

    async def _answer(self, run_id: str, message: Call, call_tool: ToolCallHandler) -> None:
        _, line = await answer_call(run_id, message, call_tool)
        await self._send_line(line)


def report_from_done(done: Done) -> RunReport:
    if done.ok or done.error is None:
        return RunReport(
            ok=True,
            result=done.result,
            result_repr=done.result_repr,
            tool_calls=done.tool_calls,
            output_dropped=done.output_dropped,
        )
    error = done.error
    error_type: Any = error.type if error.type in get_args(ErrorType) else "program_error"
    return RunReport(
        ok=False,
        error_type=error_type,
        exc_type=error.exc_type,
        message=error.message,
        traceback=error.traceback,
        tool_calls=done.tool_calls,
        output_dropped=done.output_dropped,
    )

"""The protocol's driver over a byte stream, shared by every backend that can hold a stream open (process, docker).

A backend starts an interpreter with ``protocol.PYTHON_ARGS`` and hands this module a stream to write the host's
messages to and where the runtime's come from; ``RuntimeChannel`` performs the start-up handshake, then runs
programs. Everything protocol-level (messages, constants, the handshake's two halves) comes from ``protocol.py``;
this module only moves bytes.

``MessagePipe``: the runtime's messages on an fd of their own (the process backend's stdout pipe, the docker
backend's direct channel), read during a run by a reader callback on the event loop that parses each line and
routes it at once (``_RunMessages``): output to the run, a call to an answering task, ``done`` to the run's task.
A nested call then crosses no reader task on its way in: with ``PipeSender`` (the other direction on such an fd:
the host's messages written straight into it) the host's event loop turns 12.9 times per nested call instead of
14.6, and its CPU per call is ~2.6% lower; wall time did not change measurably (docs/benchmarks.md). A byte stream
that is not an fd of its own (Docker's attach stream, which may be TLS and carries stderr frames too) is read by the
run's task and routed the same way.

``RawOutput``: what an interpreter writes to its real file descriptors 1 and 2, delivered as the run's stderr, in
order. C extensions and child processes write to the real fds, not to the runtime's capturing ``sys.stdout``; those
bytes travel on a different stream (a pipe, Docker's stderr frames) than the protocol, so they can arrive after the
run's ``done``. The runtime therefore ends each run by writing ``protocol.END_MARK``, the run id and a NUL to fd 2,
and the host waits (briefly) for that mark before it closes the run: everything written before it belongs to the
run. A program can forge the mark; that only ends the wait for its own output early.

``RawPipe``: where a local interpreter's fds 1 and 2 go (a pipe for process and srt, the direct channel's second
socket for docker on a local engine), read during a run by a reader callback on the event loop, not by a task of
its own: a task per run (start, wake-ups, the wait for the mark) cost ~0.3 ms of a ~4.5 ms round trip here. The
mark is written before ``done``, so when ``done`` arrives it is already in the pipe: the run reads what is there
and, in the usual case, has its mark without waiting.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import math
import os
import select
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream

from ptc_mcp.errors import SandboxFailure, raise_from_group
from ptc_mcp.sandboxes.base import OutputSink, RunReport, RunRequest, ToolCallHandler
from ptc_mcp.sandboxes.protocol import (
    END_MARK,
    MAX_MESSAGE_BYTES,
    Call,
    Done,
    Output,
    ProtocolError,
    Ready,
    answer_call,
    cancel_message,
    encode,
    expect_ready,
    not_started,
    parse_runtime_message,
    report_from_done,
    run_message,
    startup_payload,
)

START_TIMEOUT_S = 30.0
_MAX_HELD = 256
READ_CHUNK = 1 << 16
END_WAIT_S = 1.0


class RuntimeChannel:
    """Speaks the protocol to one runtime over its stdin/stdout streams."""

    def __init__(
        self,
        send_stream: ByteSendStream,
        receive: ByteReceiveStream | MessagePipe,
        raw: RawOutput | None = None,
        raw_pipe: RawPipe | None = None,
    ) -> None:
        self.raw = raw_pipe.raw if raw_pipe is not None else raw
        """The interpreter's raw fd 1/2 output, when the backend reads it: the run waits for its end mark."""
        self._raw_pipe = raw_pipe
        """Where ``raw`` comes from when it is a pipe of its own (given instead of ``raw``): read during a run."""
        self._send_stream = send_stream
        self._messages = receive if isinstance(receive, MessagePipe) else None
        """Where the runtime's messages come from when they have an fd of their own; else from ``_receive``."""
        self._receive = None if isinstance(receive, MessagePipe) else BufferedByteReceiveStream(receive)
        self._send_lock = anyio.Lock(fast_acquire=True)  # a free lock costs no trip round the event loop
        self._catalog_version: str | None = None
        self.python_version: str | None = None

    async def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Send the runtime and wait until it says ``ready``."""
        try:
            with anyio.fail_after(timeout_s):
                await self._send_stream.send(startup_payload())
                line = await self._next_line()
        except TimeoutError:
            raise not_started(timeout_s) from None
        self.python_version = expect_ready(line).python

    async def _send(self, message: dict[str, Any]) -> None:
        await self._send_line(encode(message))

    async def _send_line(self, line: bytes) -> None:
        async with self._send_lock:
            try:
                await self._send_stream.send(line)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise SandboxFailure(f"the sandbox stopped accepting input: {exc!r}") from None

    async def _next_message(self) -> Ready | Call | Output | Done:
        return parse_runtime_message(await self._next_line())

    async def _next_line(self) -> bytes:
        if self._messages is not None:
            return await self._messages.next_line()
        assert self._receive is not None
        try:
            return await self._receive.receive_until(b"\n", MAX_MESSAGE_BYTES)
        except anyio.IncompleteRead:
            raise SandboxFailure("the sandbox's interpreter exited") from None
        except anyio.DelimiterNotFound:
            raise ProtocolError(f"runtime sent a line longer than {MAX_MESSAGE_BYTES} bytes") from None
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise SandboxFailure("the sandbox's interpreter exited") from None

    async def run(self, request: RunRequest, call_tool: ToolCallHandler, output: OutputSink) -> RunReport:
        """Run one program to its ``done`` message, answering its tool calls concurrently.

        A run that calls no tool needs no tasks: only once the first call comes does the run open the task group
        that answers calls (its start and end cost ~0.1 ms of a warm round trip here)."""
        fresh_catalog = request.catalog_version != self._catalog_version
        await self._send(run_message(request, with_catalog=fresh_catalog))
        self._catalog_version = request.catalog_version
        messages = _RunMessages(request.run_id, output)
        done: Done | None = None
        pipe = self._raw_pipe
        try:
            with anyio.CancelScope() as scope:
                if pipe is not None:
                    pipe.start(output, scope.cancel)
                if self._messages is not None:
                    self._messages.start(messages)
                await self._until_wanted(messages)
                if messages.unanswered:
                    await self._answering(messages, request.run_id, call_tool)
                done = messages.outcome()
                if self.raw is not None:
                    if pipe is not None:
                        pipe.drain()  # the mark was written before `done`: it is in the pipe by now
                    await self.raw.wait_for_end(request.run_id)
        finally:
            if self._messages is not None:
                self._messages.stop()
            if pipe is not None:
                pipe.stop()
        if pipe is not None and (failure := pipe.take_failure()) is not None:
            raise failure  # the raw output broke the run's limits (a flood): the callback ended the run
        if done is None:  # pragma: no cover - only a flood (above) cancels the scope
            raise SandboxFailure("the run ended without a done message")
        return report_from_done(done)

    async def _answering(self, messages: _RunMessages, run_id: str, call_tool: ToolCallHandler) -> None:
        """The rest of a run that calls tools: its calls are answered concurrently, up to its ``done``."""
        try:
            async with anyio.create_task_group() as tasks:
                with _CallAnswerers(tasks, run_id, call_tool, self._send_line) as calls:
                    messages.answer_with(calls)
                    await self._until_wanted(messages)
        except BaseExceptionGroup as group:
            raise_from_group(group)

    async def _until_wanted(self, messages: _RunMessages) -> None:
        """Until the run's task has something to do (``_RunMessages.wants_task``): from a ``MessagePipe`` the
        reader callback routes the messages meanwhile; from a stream this task reads and routes them."""
        if self._messages is not None:
            await messages.wanted()
            return
        while not messages.wants_task:
            messages.deliver(await self._next_message())

    def close(self) -> None:
        """Release the pipes (the interpreter is gone)."""
        if self._raw_pipe is not None:
            self._raw_pipe.close()
        if self._messages is not None:
            self._messages.close()
        if isinstance(self._send_stream, PipeSender):
            self._send_stream.close()

    async def cancel(self, run_id: str) -> None:
        """Ask the runtime to cancel the run (the caller still enforces a hard deadline)."""
        await self._send(cancel_message(run_id))


class _RunMessages:
    """Routes one run's messages as they arrive: output to the run's sink, calls to their answerers (kept until the
    run has answerers), its ``done`` and any failure to the run's task. Messages of other runs (stale) and ``ready``
    are skipped; after ``done`` or a failure nothing more is taken (``finished``: a reader leaves the rest unread)."""

    def __init__(self, run_id: str, output: OutputSink) -> None:
        self._run_id = run_id
        self._output = output
        self.unanswered: list[Call] = []
        """Calls that came before the run had answerers (``answer_with``)."""
        self._answerers: _CallAnswerers | None = None
        self._done: Done | None = None
        self._failure: BaseException | None = None
        self._changed: anyio.Event | None = None

    @property
    def finished(self) -> bool:
        return self._done is not None or self._failure is not None

    @property
    def wants_task(self) -> bool:
        """Whether the run's task has something to do: calls to answer and no answerers yet, or the run is over."""
        return self.finished or bool(self.unanswered)

    async def wanted(self) -> None:
        """Wait until ``wants_task`` (the messages are routed by someone else meanwhile: a reader callback)."""
        while not self.wants_task:
            self._changed = anyio.Event()
            await self._changed.wait()

    def deliver(self, message: Ready | Call | Output | Done) -> None:
        if self.finished or isinstance(message, Ready) or message.id != self._run_id:
            return  # stray or stale: never taken for this run's protocol
        if isinstance(message, Output):
            try:
                self._output.write(message.stream, message.data)
            except Exception as exc:  # the run's output limit (a flood): the run ends with it
                self.fail(exc)
        elif isinstance(message, Call):
            if self._answerers is not None:
                self._answerers.answer(message)
            else:
                self.unanswered.append(message)
                self._wake()
        else:
            self._done = message
            self._wake()

    def fail(self, failure: BaseException) -> None:
        """The run cannot go on (a malformed message, the interpreter gone, a flood): its task raises ``failure``."""
        if not self.finished:
            self._failure = failure
            self._wake()

    def answer_with(self, answerers: _CallAnswerers) -> None:
        """From now on calls go straight to ``answerers``; those that came before go first."""
        self._answerers = answerers
        unanswered, self.unanswered = self.unanswered, []
        for call in unanswered:
            answerers.answer(call)

    def outcome(self) -> Done:
        """The run's ``done``, or its failure raised."""
        if self._failure is not None:
            raise self._failure
        if self._done is None:  # pragma: no cover - the task waits until one of the two
            raise SandboxFailure("the run ended without a done message")
        return self._done

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()


class _CallAnswerers:
    """Answers one run's tool calls concurrently: each call goes to an idle answering task, or starts a new one
    (handing a call over costs a fraction of starting a task). Leaving the ``with`` block (the run is done) ends
    the idle ones and cancels those still answering: calls the program left unawaited."""

    def __init__(
        self,
        tasks: TaskGroup,
        run_id: str,
        call_tool: ToolCallHandler,
        send_line: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self._tasks = tasks
        self._run_id = run_id
        self._call_tool = call_tool
        self._send_line = send_line
        self._queue, self._next = anyio.create_memory_object_stream[Call](math.inf)
        self._idle = 0
        self._unanswered = 0
        self._closed = False

    def __enter__(self) -> _CallAnswerers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closed = True  # a call that still arrives (the run is ending) starts nothing
        self._queue.close()  # idle answerers end
        self._next.close()  # (each answerer reads through its own clone)
        if self._unanswered:  # only then: cancelling formats the task's repr (anyio), a cost on every run
            self._tasks.cancel_scope.cancel()

    def answer(self, call: Call) -> None:
        if self._closed:
            return
        self._unanswered += 1
        if self._idle:
            self._idle -= 1
            self._queue.send_nowait(call)
        else:
            self._tasks.start_soon(self._serve, call, self._next.clone())

    async def _serve(self, call: Call, calls: MemoryObjectReceiveStream[Call]) -> None:
        with calls:
            while True:
                try:
                    _, line = await answer_call(self._run_id, call, self._call_tool)
                    await self._send_line(line)
                finally:
                    self._unanswered -= 1
                self._idle += 1
                try:
                    call = await calls.receive()
                except anyio.EndOfStream:
                    return


class PipeSender(ByteSendStream):
    """The host's messages written to an fd of their own (the process backend's stdin pipe, the direct channel's
    socket): a write that fits goes straight into the pipe, with no trip round the event loop after it; a full pipe
    is waited on. ``RuntimeChannel.close`` closes it."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd: int | None = fd

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            if self._fd is None:
                raise anyio.ClosedResourceError
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await anyio.wait_writable(self._fd)
            except OSError as exc:
                raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _ReadDuringRuns:
    """An fd of the host's own that a reader callback on the event loop reads while a run is in progress (ptc-mcp
    serves on asyncio), so a run starts no task for it; between runs nobody reads it."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd: int | None = fd
        self._loop: asyncio.AbstractEventLoop | None = None
        """The event loop whose reader callback reads the fd, while a run does."""

    def _read(self) -> object:
        raise NotImplementedError

    def _start_reading(self) -> bool:
        """Call ``_read`` whenever the fd is readable; ``False`` when it is closed already."""
        if self._fd is None:
            return False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._read)
        return True

    def _stop_reading(self) -> None:
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
        self._loop = None

    def stop(self) -> None:
        self._stop_reading()

    def close(self) -> None:
        self.stop()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class MessagePipe(_ReadDuringRuns):
    """The runtime's messages from an fd of their own (a local interpreter's stdout pipe, the direct channel's
    socket), read during a run by a reader callback on the event loop that parses each complete line and routes it
    (``_RunMessages``): a call reaches its answering task without a reader task in between. Between runs nobody
    reads it; a run leaves what follows its ``done`` unread, as a stream reader does."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self._buffer = bytearray()
        self._scanned = 0
        """How much of ``_buffer`` holds no newline (a long line is not searched again with every chunk)."""
        self._run: _RunMessages | None = None

    async def next_line(self) -> bytes:
        """The next line, waiting for it (the start-up handshake: no run reads the pipe yet)."""
        while (line := self._take_line()) is None:
            if self._fd is None:
                raise SandboxFailure("the sandbox's interpreter exited")
            await anyio.wait_readable(self._fd)
            with contextlib.suppress(BlockingIOError):
                self._fill()
        return line

    def start(self, run: _RunMessages) -> None:
        """Route what arrives (and what is here already) to ``run`` until it is finished or ``stop``."""
        self._run = run
        if not self._start_reading():
            run.fail(SandboxFailure("the sandbox's interpreter exited"))
            return
        self._route()

    def stop(self) -> None:
        self._stop_reading()
        self._run = None

    def _read(self) -> None:
        """The reader callback: one read, then every complete line routed."""
        try:
            self._fill()
        except BlockingIOError:
            return
        except SandboxFailure as failure:
            if self._run is not None:
                self._run.fail(failure)
            self.stop()
            return
        self._route()

    def _fill(self) -> None:
        """One read into the buffer (``BlockingIOError``: nothing there; ``SandboxFailure``: the pipe ended)."""
        assert self._fd is not None
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            raise
        except OSError:
            data = b""
        if not data:
            raise SandboxFailure("the sandbox's interpreter exited")
        self._buffer += data

    def _route(self) -> None:
        while self._run is not None and not self._run.finished:
            try:
                line = self._take_line()
                if line is None:
                    return
                message = parse_runtime_message(line)
            except ProtocolError as failure:
                self._run.fail(failure)
                return
            self._run.deliver(message)

    def _take_line(self) -> bytes | None:
        end = self._buffer.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(self._buffer)
            if self._scanned > MAX_MESSAGE_BYTES:
                raise ProtocolError(f"runtime sent a line longer than {MAX_MESSAGE_BYTES} bytes")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        self._scanned = 0
        return line


class RawOutput:
    """Splits the interpreter's raw stderr into the current run's output and the runtime's end marks."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._held = b""
        self._ended: set[str] = set()
        self._changed = anyio.Event()
        self.output: OutputSink | None = None
        self.pump: Callable[[], Awaitable[None]] | None = None
        """For sources nobody else reads once the run is done (Docker's attach socket): read one more chunk."""

    def feed(self, data: bytes) -> None:
        buffer = self._held + data
        text = bytearray()
        while True:
            start = buffer.find(END_MARK)
            if start < 0:
                break
            stop = buffer.find(b"\x00", start + len(END_MARK))
            if stop < 0:
                break
            text += buffer[:start]
            self._ended.add(buffer[start + len(END_MARK) : stop].decode("ascii", "replace"))
            buffer = buffer[stop + 1 :]
            self._changed.set()
        hold_from = _possible_mark_start(buffer)
        if len(buffer) - hold_from > _MAX_HELD:
            hold_from = len(buffer)  # not a mark after all: never hold output back without bound
        text += buffer[:hold_from]
        self._held = buffer[hold_from:]
        if text and self.output is not None:
            self.output.write("stderr", self._decoder.decode(bytes(text)))

    def ended(self, run_id: str) -> bool:
        """Whether the runtime's end mark for ``run_id`` has passed (and the run has not stopped waiting for it)."""
        return run_id in self._ended

    async def wait_for_end(self, run_id: str, timeout_s: float = END_WAIT_S) -> None:
        """Until the runtime's end mark for ``run_id`` has passed (bounded: a dead pipe must not hang a run)."""
        if self.ended(run_id):  # the usual case: read before `done` was acted on
            self._ended.discard(run_id)
            return
        with anyio.move_on_after(timeout_s):
            try:
                while not self.ended(run_id):
                    if self.pump is not None:
                        await self.pump()
                    else:
                        self._changed = anyio.Event()
                        await self._changed.wait()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the source is gone: its mark never comes
        self._ended.discard(run_id)


class RawPipe(_ReadDuringRuns):
    """The read end of the pipe a local interpreter's fds 1 and 2 write to, read into a ``RawOutput`` while a run is
    in progress. What arrives between runs waits in the pipe for the next run, as the end marks expect."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self.raw = RawOutput()
        self._end_run: Callable[[], object] | None = None
        self._failure: Exception | None = None

    def start(self, output: OutputSink, end_run: Callable[[], object]) -> None:
        """Deliver what arrives to ``output``; a failure to deliver it (a flood past the cap) calls ``end_run``."""
        self.raw.output = output
        self._end_run = end_run
        self._failure = None  # a run that ended otherwise (cancelled) may have left one behind
        self._start_reading()

    @property
    def reading(self) -> bool:
        """Whether a run is reading the pipe (not before a run, after it, or after its end or a flood)."""
        return self._loop is not None

    @property
    def quiet(self) -> bool:
        """Between runs: nothing waits in the pipe, and it has not ended (a warm interpreter must be silent)."""
        if self._fd is None:
            return False
        readable, _, _ = select.select([self._fd], [], [], 0)
        return not readable

    def drain(self) -> None:
        """Read everything the pipe holds now (it never blocks)."""
        while self._read():
            pass

    def _read(self) -> bool:
        """One read (the reader callback: the loop calls again while there is more); whether it got anything."""
        if self._loop is None or self._fd is None:
            return False
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:  # the interpreter and its children closed it: nothing more will come
            self._stop_reading()
            return False
        try:
            self.raw.feed(data)
        except Exception as exc:  # the run's output limit (a flood): the run ends with it
            self._failure = exc
            self._stop_reading()
            if self._end_run is not None:
                self._end_run()
            return False
        return True

    def stop(self) -> None:
        """The run is over: stop reading (what comes later waits in the pipe for the next run)."""
        self._stop_reading()
        self.raw.output = None
        self._end_run = None

    def take_failure(self) -> Exception | None:
        failure, self._failure = self._failure, None
        return failure


def _possible_mark_start(buffer: bytes) -> int:
    """Where a mark that is not complete yet may begin at the end of ``buffer`` (``len(buffer)``: nowhere)."""
    start = buffer.rfind(END_MARK)
    if start >= 0:
        return start
    for size in range(min(len(END_MARK) - 1, len(buffer)), 0, -1):
        if buffer.endswith(END_MARK[:size]):
            return len(buffer) - size
    return len(buffer)

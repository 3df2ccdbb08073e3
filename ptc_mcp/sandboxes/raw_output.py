"""What an interpreter writes to its real file descriptors 1 and 2, delivered as the run's stderr, in order.

C extensions and child processes write to the real fds, not to the runtime's capturing ``sys.stdout``; those
bytes travel on a different stream (a pipe, Docker's stderr frames) than the protocol, so they can arrive after
the run's ``done``. The runtime therefore ends each run by writing an end mark with the run id to fd 2, and the
host waits (briefly) for that mark before it closes the run: everything written before it belongs to the run.
A program can forge the mark; that only ends the wait for its own output early.
"""

from __future__ import annotations

import codecs
from collections.abc import Awaitable, Callable

import anyio

from ptc_mcp.sandboxes.base import OutputSink

END_MARK = b"\x00ptc-run-end:"
"""Followed by the run id and a NUL; written by the runtime to fd 2 just before ``done``."""

_MAX_HELD = 256
END_WAIT_S = 1.0


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

    async def wait_for_end(self, run_id: str, timeout_s: float = END_WAIT_S) -> None:
        """Until the runtime's end mark for ``run_id`` has passed (bounded: a dead pipe must not hang a run)."""
        with anyio.move_on_after(timeout_s):
            try:
                while run_id not in self._ended:
                    if self.pump is not None:
                        await self.pump()
                    else:
                        self._changed = anyio.Event()
                        await self._changed.wait()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the source is gone: its mark never comes
        self._ended.discard(run_id)


def _possible_mark_start(buffer: bytes) -> int:
    """Where a mark that is not complete yet may begin at the end of ``buffer`` (``len(buffer)``: nowhere)."""
    start = buffer.rfind(END_MARK)
    if start >= 0:
        return start
    for size in range(min(len(END_MARK) - 1, len(buffer)), 0, -1):
        if buffer.endswith(END_MARK[:size]):
            return len(buffer) - size
    return len(buffer)

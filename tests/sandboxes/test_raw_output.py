"""Raw fd output is split from the runtime's end marks, whatever the chunking; a local interpreter's pipe is read
by a reader callback while a run is in progress (``RawPipe``), over a real pipe here."""

from __future__ import annotations

import os
from collections.abc import Iterator

import anyio
import pytest

from ptc_mcp.errors import RunLimitExceeded
from ptc_mcp.sandboxes.protocol import END_MARK
from ptc_mcp.sandboxes.stream import RawOutput, RawPipe


class Collected:
    def __init__(self) -> None:
        self.text = ""

    def write(self, stream: str, text: str) -> None:
        assert stream == "stderr"
        self.text += text


@pytest.mark.parametrize("chunk", [1, 2, 5, 13, 1000])
@pytest.mark.anyio
async def test_the_end_mark_is_found_and_stripped_across_any_chunking(chunk: int) -> None:
    raw, collected = RawOutput(), Collected()
    raw.output = collected
    data = b"raw:\xff\x00before " + END_MARK + b"run1\x00" + b"after"
    for start in range(0, len(data), chunk):
        raw.feed(data[start : start + chunk])
    with anyio.fail_after(1):
        await raw.wait_for_end("run1")
    assert collected.text == "raw:\ufffd\x00before after"


@pytest.mark.anyio
async def test_waiting_for_a_mark_that_never_comes_is_bounded() -> None:
    raw = RawOutput()
    with anyio.fail_after(2):
        await raw.wait_for_end("never", timeout_s=0.05)


def test_text_that_only_looks_like_the_start_of_a_mark_is_not_held_back_forever() -> None:
    raw, collected = RawOutput(), Collected()
    raw.output = collected
    raw.feed(END_MARK + b"x" * 1000)
    assert collected.text.endswith("x" * 1000)


class Capped(Collected):
    """An output sink that refuses more than ``cap`` characters, as the run's collector does on a flood."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def write(self, stream: str, text: str) -> None:
        super().write(stream, text)
        if len(self.text) > self.cap:
            raise RunLimitExceeded("output_limit", "the program kept printing past the output cap")


@pytest.fixture
def pipe() -> Iterator[tuple[RawOutput, RawPipe, int]]:
    read_end, write_end = os.pipe()
    raw_pipe = RawPipe(read_end)
    yield raw_pipe.raw, raw_pipe, write_end
    raw_pipe.close()
    os.close(write_end)


@pytest.mark.anyio
async def test_a_run_reads_its_pipe_as_output_arrives(pipe: tuple[RawOutput, RawPipe, int]) -> None:
    raw, raw_pipe, write_end = pipe
    collected = Collected()
    raw_pipe.start(collected, lambda: None)
    os.write(write_end, b"from a child process\n")
    with anyio.fail_after(5):
        while not collected.text:
            await anyio.sleep(0.001)  # the reader callback runs on the event loop, between these turns
    assert collected.text == "from a child process\n"
    raw_pipe.stop()
    assert raw.output is None


@pytest.mark.anyio
async def test_at_done_the_mark_already_in_the_pipe_is_read_without_waiting(
    pipe: tuple[RawOutput, RawPipe, int],
) -> None:
    raw, raw_pipe, write_end = pipe
    collected = Collected()
    raw_pipe.start(collected, lambda: None)
    os.write(write_end, b"last words" + END_MARK + b"run1\x00")  # the runtime writes its mark before `done`
    raw_pipe.drain()  # what the run does on `done`, before any turn of the event loop
    assert raw.ended("run1")
    with anyio.fail_after(1):
        await raw.wait_for_end("run1")
    assert collected.text == "last words"


@pytest.mark.anyio
async def test_what_arrives_between_runs_waits_in_the_pipe_for_the_next_run(
    pipe: tuple[RawOutput, RawPipe, int],
) -> None:
    _, raw_pipe, write_end = pipe
    first, second = Collected(), Collected()
    raw_pipe.start(first, lambda: None)
    raw_pipe.stop()
    os.write(write_end, b"late")
    raw_pipe.drain()  # not reading between runs: nothing is taken
    assert first.text == ""
    raw_pipe.start(second, lambda: None)
    raw_pipe.drain()
    assert second.text == "late"


@pytest.mark.anyio
async def test_a_flood_through_the_pipe_ends_the_run_with_the_sinks_error(
    pipe: tuple[RawOutput, RawPipe, int],
) -> None:
    _, raw_pipe, write_end = pipe
    ended: list[bool] = []
    raw_pipe.start(Capped(cap=100), lambda: ended.append(True))
    os.write(write_end, b"z" * 1000)
    raw_pipe.drain()
    assert ended == [True]
    failure = raw_pipe.take_failure()
    assert isinstance(failure, RunLimitExceeded) and failure.error_type == "output_limit"
    assert raw_pipe.take_failure() is None  # taken once: the next run starts clean
    os.write(write_end, b"more")
    raw_pipe.drain()  # it stopped reading: the flood is not read further
    assert not raw_pipe.reading


@pytest.mark.anyio
async def test_the_end_of_the_pipe_stops_the_reading() -> None:
    read_end, write_end = os.pipe()
    raw_pipe, collected = RawPipe(read_end), Collected()
    os.write(write_end, b"bye")
    os.close(write_end)  # nobody can write any more: the interpreter and its children are gone
    raw_pipe.start(collected, lambda: None)
    raw_pipe.drain()
    assert collected.text == "bye"
    assert not raw_pipe.reading  # an ended pipe is readable forever: the loop must not keep calling back
    raw_pipe.close()

"""Raw fd output is split from the runtime's end marks, whatever the chunking."""

from __future__ import annotations

import anyio
import pytest

from ptc_mcp.sandboxes.protocol import END_MARK
from ptc_mcp.sandboxes.stream import RawOutput


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

"""A runtime that replays given protocol messages, in memory, behind the real ``RuntimeChannel``.

The host side runs unchanged (channel, executor, bridge, audit); only the interpreter is replaced by a list of
messages, each sent with the run's id. For tests that need exact control of what "the runtime" says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from ptc_mcp.sandboxes.base import OutputSink, RunReport, RunRequest, ToolCallHandler
from ptc_mcp.sandboxes.stream import RuntimeChannel

Encoder = Callable[[dict[str, Any]], bytes]


def line_of(message: dict[str, Any]) -> bytes:
    """A message as the runtime writes it: one line of ASCII JSON."""
    return json.dumps(message, ensure_ascii=True).encode("ascii") + b"\n"


class ReplayedRuntime(ByteReceiveStream, ByteSendStream):
    """Both ends of a runtime's pipes in memory: takes the host's ``run`` message, then replays ``lines``."""

    def __init__(self, lines: list[dict[str, Any]], encode: Encoder) -> None:
        self.lines = lines
        self.encode = encode
        self.run_id: str | None = None
        self.sent = False

    async def send(self, item: bytes) -> None:
        if item.startswith(b'{"type":"run"'):
            self.run_id = json.loads(item)["id"]

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.sent or self.run_id is None:
            raise anyio.EndOfStream
        self.sent = True
        run_id = self.run_id
        return b"".join(self.encode({**message, "id": run_id}) for message in self.lines)

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class ReplayedSession:
    def __init__(self, lines: list[dict[str, Any]], encode: Encoder) -> None:
        runtime = ReplayedRuntime(lines, encode)
        self.channel = RuntimeChannel(runtime, runtime)
        self.alive = True

    async def run(self, request: RunRequest, call_tool: ToolCallHandler, output: OutputSink) -> RunReport:
        return await self.channel.run(request, call_tool, output)

    async def aclose(self) -> None:
        self.alive = False


class ReplayedBackend:
    kind = "replayed"
    isolated = True

    def __init__(self, lines: list[dict[str, Any]], encode: Encoder | None = None) -> None:
        self.lines = lines
        self.encode = encode or line_of

    async def start_session(self) -> ReplayedSession:
        return ReplayedSession(self.lines, self.encode)

    async def aclose(self) -> None:
        pass

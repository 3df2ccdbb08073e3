"""The program's output as the host collects it: capped, made safe, read as a stream with bounded memory."""

from __future__ import annotations

import re

from ptc_mcp.errors import RunLimitExceeded
from ptc_mcp.sandboxes.base import StreamName
from ptc_mcp.sandboxes.protocol import FLOOD_FACTOR
from ptc_mcp.text import valid_text

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def safe_text(text: str) -> str:
    """Valid UTF-8 with no terminal control sequences: lone surrogates → U+FFFD, control characters → ``\\xNN``."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", valid_text(text))


class OutputCollector:
    """An ``OutputSink`` that keeps at most ``cap`` bytes across stdout and stderr and counts the rest."""

    def __init__(self, cap: int, flood_factor: int = FLOOD_FACTOR) -> None:
        self._cap = cap
        self._flood_limit = cap * flood_factor
        self._parts: dict[StreamName, list[str]] = {"stdout": [], "stderr": []}
        self._kept = 0
        self.dropped = 0
        self.chunks = 0

    def write(self, stream: StreamName, text: str) -> None:
        self.chunks += 1
        text = safe_text(text)
        size = len(text.encode("utf-8"))
        room = self._cap - self._kept
        if room > 0:
            kept = text if size <= room else text.encode("utf-8")[:room].decode("utf-8", "ignore")
            kept_size = len(kept.encode("utf-8"))
            self._parts[stream].append(kept)
            self._kept += kept_size
            size -= kept_size
        if size > 0:
            self.dropped += size
            if self.dropped > self._flood_limit:
                raise RunLimitExceeded(
                    "output_limit", f"the program printed more than {self._flood_limit + self._cap} bytes"
                )

    def note_dropped(self, size: int) -> None:
        """Count output the runtime dropped before sending it (past the cap), so the marker reports it."""
        self.dropped += size

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def body(self, stream: StreamName) -> str:
        """What was kept of ``stream``, without the truncation marker."""
        return "".join(self._parts[stream])

    def text(self, stream: StreamName) -> str:
        body = self.body(stream)
        if stream == "stdout" and self.dropped:
            body += f"\n[... output truncated at {self._cap} bytes: {self.dropped} more bytes not shown ...]\n"
        return body

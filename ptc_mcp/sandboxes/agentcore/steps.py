"""The code ptc-mcp sends with each ``executeCode`` in stepped mode, and how it reads the answers.

Install (once per session): load the runtime (``sandbox/ptc_runtime.py``) into the interpreter's persistent process
without running its stream ``main()``, create one ``StepDriver`` and print ``ready``. Step: hand the driver the
host's messages and print what the runtime sent back. Every answer is one line that starts with a per-session
marker, so nothing else the interpreter prints can be taken for a protocol message; the messages themselves are
then validated like any other runtime message.
"""

from __future__ import annotations

import base64
import json
import secrets
import zlib
from typing import Any

from ptc_mcp.sandboxes.protocol import (
    Call,
    Done,
    Output,
    ProtocolError,
    Ready,
    parse_runtime_message,
    runtime_source,
)

__all__ = ["StepCodec"]

DRIVER = "__ptc_step__"


class StepCodec:
    """Builds the ``executeCode`` snippets of one session and parses their output."""

    def __init__(self, wait_s: float, output_interval_s: float) -> None:
        self.marker = f"@@ptc-{secrets.token_hex(8)}@@"
        self._wait_s = wait_s
        self._output_interval_s = output_interval_s

    def install_code(self) -> str:
        """Loads the runtime once (a second install in the same interpreter only says ``ready`` again)."""
        packed = base64.b64encode(zlib.compress(runtime_source(), 9)).decode("ascii")
        return (
            f"if {DRIVER!r} not in globals():\n"
            f"    def _ptc_install():\n"
            f"        import base64, zlib\n"
            f"        namespace = {{'__name__': '__ptc_stepped__'}}\n"
            f"        source = zlib.decompress(base64.b64decode({packed!r}))\n"
            f"        exec(compile(source, 'ptc_runtime', 'exec'), namespace)\n"
            f"        return namespace['StepDriver']({self._wait_s!r}, {self._output_interval_s!r})\n"
            f"    {DRIVER} = _ptc_install()\n"
            f"    del _ptc_install\n"
            f"print({self.marker!r} + {DRIVER}.ready())\n"
        )

    def step_code(self, seq: int, messages: list[dict[str, Any]]) -> str:
        """One step: deliver ``messages`` (JSON travels as a string literal, never as code)."""
        payload = json.dumps(messages, ensure_ascii=True, separators=(",", ":"))
        return f"print({self.marker!r} + {DRIVER}.step({seq}, {payload!r}))\n"

    def answer(self, stdout: str) -> str | None:
        """The JSON text after the marker on the last marked line, or ``None`` when there is none."""
        for line in reversed(stdout.splitlines()):
            if line.startswith(self.marker):
                return line[len(self.marker) :]
        return None

    def parse_ready(self, stdout: str) -> Ready:
        text = self.answer(stdout)
        message = parse_runtime_message(text.encode("utf-8", "surrogatepass")) if text is not None else None
        if not isinstance(message, Ready):
            raise ProtocolError("the runtime did not say 'ready' after it was installed")
        return message

    def parse_step(self, stdout: str) -> list[Call | Output | Done] | None:
        """The runtime's messages from a step's output (``None``: the step printed no answer)."""
        text = self.answer(stdout)
        if text is None:
            return None
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"a step's answer is not JSON: {exc}") from None
        if not isinstance(raw, list):
            raise ProtocolError("a step's answer is not a list of messages")
        messages: list[Call | Output | Done] = []
        for item in raw:
            message = parse_runtime_message(json.dumps(item).encode("utf-8"))
            if isinstance(message, Ready):
                continue
            messages.append(message)
        return messages

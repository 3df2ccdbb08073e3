"""Text the host can always encode: every string from the runtime or a downstream server passes here once.

Python strings may hold lone surrogates (``json.loads('"\\ud800"')``, ``os.listdir`` of a non-UTF-8 name), and
bytes from outside may not be UTF-8. Neither can be written as UTF-8: the MCP SDK's writer, a log handler or an
audit file would fail on them. The host replaces both with U+FFFD where the text enters it (``ptc_mcp.sandboxes.
protocol`` for runtime messages, ``ptc_mcp.bridge`` for downstream results), so nothing behind that point ever
sees one.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["has_lone_surrogate", "valid_json", "valid_text"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (encodable as UTF-8)."""
    return _SURROGATE.sub("\ufffd", text) if has_lone_surrogate(text) else text


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` cannot be encoded as UTF-8 (the codec's C loop is several times faster than a regex)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def valid_json(value: Any) -> Any:
    """A JSON value with ``valid_text`` applied to every string in it, keys included (``value`` itself when none
    needed it). Raises ``ValueError``/``TypeError``/``RecursionError`` for values that are not JSON.

    Round-trips through JSON text rather than walking the value: ``json`` handles nesting in C, and a surrogate
    pair was already joined into one character by the parser, so every surrogate left in the text is a lone one.
    """
    text = json.dumps(value, ensure_ascii=False)
    if not has_lone_surrogate(text):
        return value
    return json.loads(valid_text(text))

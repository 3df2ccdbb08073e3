"""The AWS event-stream binary framing (``application/vnd.amazon.eventstream``), encoder side.

One message is::

    total length (u32) | headers length (u32) | prelude CRC32 (u32) | headers | payload | message CRC32 (u32)

Each header is ``name length (u8) | name | value type (u8) | value``; the emulator only sends string values
(type 7: ``length (u16) | UTF-8 bytes``). Both CRCs are CRC-32 (IEEE 802.3), big-endian, the message CRC covering
everything before it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any

__all__ = ["encode_event", "encode_exception", "encode_message"]

_STRING = 7
_PRELUDE = struct.Struct(">II")
_U32 = struct.Struct(">I")
_MAX_HEADER_VALUE = 0xFFFF


def _encode_headers(headers: Mapping[str, str]) -> bytes:
    parts: list[bytes] = []
    for name, value in headers.items():
        raw_name = name.encode("utf-8")
        raw_value = value.encode("utf-8")
        if len(raw_name) > 0xFF or len(raw_value) > _MAX_HEADER_VALUE:
            raise ValueError(f"event-stream header {name!r} is too long")
        parts.append(bytes([len(raw_name)]) + raw_name + bytes([_STRING]))
        parts.append(struct.pack(">H", len(raw_value)) + raw_value)
    return b"".join(parts)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One framed message with string headers."""
    raw_headers = _encode_headers(headers)
    total = _PRELUDE.size + _U32.size + len(raw_headers) + len(payload) + _U32.size
    prelude = _PRELUDE.pack(total, len(raw_headers))
    prelude += _U32.pack(zlib.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + raw_headers + payload
    return body + _U32.pack(zlib.crc32(body) & 0xFFFFFFFF)


def encode_event(event_type: str, body: Any) -> bytes:
    """An ``event`` message whose payload is ``body`` as JSON (rest-json event streams)."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, json.dumps(body, separators=(",", ":")).encode("utf-8"))


def encode_exception(exception_type: str, message: str) -> bytes:
    """An ``exception`` message: a modelled error member of the stream (``throttlingException``, ...)."""
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_message(headers, json.dumps({"message": message}).encode("utf-8"))

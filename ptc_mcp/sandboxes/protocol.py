"""Host side of the host↔runtime protocol (docs/protocol.md): message shapes and a strict parser.

Everything the runtime sends is untrusted: a message that is not valid JSON, not an object, too large, or of the
wrong shape raises ``ProtocolError`` and never reaches the rest of the host. Text is made valid here, once
(``ptc_mcp.text``): invalid UTF-8 and lone surrogates become U+FFFD before any message reaches a result, a log,
the audit trail or a downstream call.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ptc_mcp.errors import RunLimitExceeded, SandboxFailure, ToolCallError
from ptc_mcp.sandboxes.base import RunRequest, ToolCallHandler
from ptc_mcp.text import valid_json

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_NESTING = 100
"""Deepest list/object nesting accepted from the runtime: values this deep would make the host's own
serializers (pydantic, the MCP transport) recurse past Python's limit."""


class ProtocolError(SandboxFailure):
    """The runtime sent something that is not a valid protocol message."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Ready(_Message):
    type: Literal["ready"]
    python: str = Field(max_length=32)
    pid: int


class Call(_Message):
    type: Literal["call"]
    id: str
    call: int = Field(ge=1)
    tool: str = Field(min_length=1, max_length=512)
    args: dict[str, Any]


class Output(_Message):
    type: Literal["output"]
    id: str
    stream: Literal["stdout", "stderr"]
    data: str


class ProgramError(_Message):
    type: str = "program_error"
    exc_type: str | None = None
    message: str | None = None
    traceback: str | None = None


class Done(_Message):
    type: Literal["done"]
    id: str
    ok: bool
    result: Any = None
    result_repr: str | None = None
    error: ProgramError | None = None
    tool_calls: int = Field(default=0, ge=0)
    output_dropped: int = Field(default=0, ge=0)


RuntimeMessage = Annotated[Ready | Call | Output | Done, Field(discriminator="type")]
_ADAPTER: TypeAdapter[Ready | Call | Output | Done] = TypeAdapter(RuntimeMessage)


def parse_runtime_message(line: bytes) -> Ready | Call | Output | Done:
    """Parse one line from the runtime; raises ``ProtocolError`` for anything malformed."""
    if len(line) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"protocol message of {len(line)} bytes exceeds {MAX_MESSAGE_BYTES}")
    text = line.decode("utf-8", "replace")  # the runtime sends ASCII; anything else is hostile but still text
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"runtime sent a line that is not JSON: {exc}") from None
    except RecursionError:  # "[[[[..." thousands deep: json.loads recurses per level
        raise ProtocolError("runtime sent JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError("runtime sent a JSON value that is not an object")
    if _depth_exceeds(data, MAX_NESTING):
        raise ProtocolError(f"runtime sent JSON nested deeper than {MAX_NESTING} levels")
    if b"\\ud" in line or b"\\uD" in line:  # an escape that may be a lone surrogate (valid_json checks exactly)
        data = valid_json(data)
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(f"runtime sent a malformed message: {exc.errors()[0]['msg']}") from None


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists/objects deeper than ``limit`` (iterative: no recursion of its own)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def run_message(request: RunRequest, *, with_catalog: bool) -> dict[str, Any]:
    """The host's ``run`` message (the catalog only when the runtime has not seen this version)."""
    return {
        "type": "run",
        "id": request.run_id,
        "code": request.code,
        "catalog": request.catalog if with_catalog else None,
        "catalog_version": request.catalog_version,
        "max_output_bytes": request.max_output_bytes,
    }


def encode(message: dict[str, Any]) -> bytes:
    """One host→runtime message as a line of ASCII JSON."""
    return json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


async def answer_call(run_id: str, call: Call, call_tool: ToolCallHandler) -> tuple[dict[str, Any], bytes]:
    """Run one tool call for the runtime: the ``result`` message, and that message encoded as a line.

    Whatever goes wrong on the host while answering (a bug, a value that is not JSON) becomes this call's error in
    the program, never a failure of the channel, the run or the server. Encoding here doubles as the check that
    the value is JSON: a value the runtime could not decode becomes this call's error instead of breaking the channel.
    """
    reply: dict[str, Any] = {"type": "result", "id": run_id, "call": call.call}
    try:
        reply.update(ok=True, value=await call_tool(call.tool, call.args))
    except RunLimitExceeded:
        raise  # ends the run (a program that keeps calling past its budget)
    except ToolCallError as exc:
        reply.update(ok=False, error={"type": exc.error_type, "message": exc.message})
    except TypeError as exc:
        reply.update(ok=False, error={"type": "invalid_arguments", "message": str(exc)})
    except (ValueError, KeyError, LookupError) as exc:
        reply.update(ok=False, error={"type": "tool_error", "message": str(exc)})
    except Exception as exc:  # a host bug must fail this call only
        log.exception("answering %s failed", call.tool)
        reply.update(ok=False, error={"type": "tool_error", "message": f"the host failed to answer: {exc!r}"})
    try:
        return reply, encode(reply)
    except (TypeError, ValueError, RecursionError) as exc:
        reply.pop("value", None)
        reply.update(ok=False, error={"type": "tool_error", "message": f"the result is not JSON: {exc}"})
        return reply, encode(reply)

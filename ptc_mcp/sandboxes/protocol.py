"""The host↔runtime protocol (docs/protocol.md): the one home of everything the host and the runtime share.

What lives here: every message type and its shape, every constant the runtime (``sandbox/ptc_runtime.py``) mirrors
(listed in ``SHARED_WITH_RUNTIME``, which tests/sandboxes/test_protocol_constants.py pins against the runtime's own
values), how the runtime is delivered (``BOOTSTRAP``, the start-up handshake), encoding of host messages and a strict
parser of runtime messages. The drivers hold only transport: ``stream.py`` (a byte stream: process, docker) and
``agentcore/steps.py`` (the stepped ``executeCode`` exchange).

Everything the runtime sends is untrusted: a message that is not valid JSON, not an object, too large, or of the
wrong shape raises ``ProtocolError`` and never reaches the rest of the host. Text is made valid here, once
(``ptc_mcp.text``): invalid UTF-8 and lone surrogates become U+FFFD before any message reaches a result, a log,
the audit trail or a downstream call.
"""

from __future__ import annotations

import functools
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ptc_mcp.config import LimitsConfig
from ptc_mcp.errors import ErrorType, RunLimitExceeded, SandboxFailure, ToolCallError, validation_problems
from ptc_mcp.sandboxes.base import RunReport, RunRequest, ToolCallHandler
from ptc_mcp.text import valid_json

log = logging.getLogger(__name__)

# -- shared with the runtime (each one is in SHARED_WITH_RUNTIME) ----------------------------------------------------

RUN, RESULT, CANCEL = "run", "result", "cancel"
"""Message types, host → runtime."""
READY, CALL, OUTPUT, DONE = "ready", "call", "output", "done"
"""Message types, runtime → host."""
INVALID_ARGUMENTS = "invalid_arguments"
"""A ``result`` error type the runtime raises as ``TypeError`` (a refused call's arguments), not ``ToolError``."""
SEARCH_TOOL, DESCRIBE_TOOL = "@search", "@describe"
"""The tool names of ``tools.search`` and ``tools.describe`` in a ``call``."""
DEFAULT_SEARCH_LIMIT = 5
MAX_QUERY_CHARS = 1000
"""The host refuses longer ``tools.search`` queries; the runtime cuts any discovery text to one character more."""
BINARY_MARKER = "__ptc_binary__"
"""``{"__ptc_binary__": {"mime_type", "data"}}`` on the wire becomes a ``Binary`` in the program."""
FLOOD_FACTOR = 8
"""Output past ``FLOOD_FACTOR`` times the cap ends the run as ``output_limit`` (below that it is only truncated)."""
DEFAULT_MAX_OUTPUT_BYTES: int = LimitsConfig.model_fields["max_output_bytes"].default
"""The runtime's output cap when a ``run`` names none (the host always names one)."""
RESULT_NESTING = 90
"""A program's value nested deeper than this travels as its repr only (room below ``MAX_NESTING`` for the message)."""
END_MARK = b"\x00ptc-run-end:"
"""Followed by the run id and a NUL: written by the runtime to fd 2 just before ``done`` (see ``stream.RawOutput``)."""
RUNTIME_MODULE = "__ptc_runtime__"
"""The ``__name__`` the bootstrap runs the runtime under: the runtime starts its stream ``main()`` under it."""
STEP_WAIT_S = 10.0
"""Stepped mode: longest one step waits for a busy program (default of ``sandbox.agentcore.step_wait_s``)."""
OUTPUT_FLUSH_S = 0.5
"""Stepped mode: longest output waits for a step to carry it (default of ``sandbox.agentcore.output_interval_s``)."""
CHANNEL_ENV = "PTC_CHANNEL"
"""Names a unix socket the runtime connects to at start and speaks the protocol over instead of stdin/stdout (the
docker backend's direct channel on a local engine); unset, absent or refused: stdin/stdout, as always."""

SHARED_WITH_RUNTIME: dict[str, object] = {
    "RUN": RUN,
    "RESULT": RESULT,
    "CANCEL": CANCEL,
    "READY": READY,
    "CALL": CALL,
    "OUTPUT": OUTPUT,
    "DONE": DONE,
    "INVALID_ARGUMENTS": INVALID_ARGUMENTS,
    "SEARCH_TOOL": SEARCH_TOOL,
    "DESCRIBE_TOOL": DESCRIBE_TOOL,
    "DEFAULT_SEARCH_LIMIT": DEFAULT_SEARCH_LIMIT,
    "MAX_QUERY_CHARS": MAX_QUERY_CHARS,
    "BINARY_MARKER": BINARY_MARKER,
    "FLOOD_FACTOR": FLOOD_FACTOR,
    "DEFAULT_MAX_OUTPUT_BYTES": DEFAULT_MAX_OUTPUT_BYTES,
    "RESULT_NESTING": RESULT_NESTING,
    "END_MARK": END_MARK,
    "RUNTIME_MODULE": RUNTIME_MODULE,
    "STEP_WAIT_S": STEP_WAIT_S,
    "OUTPUT_FLUSH_S": OUTPUT_FLUSH_S,
    "CHANNEL_ENV": CHANNEL_ENV,
}
"""Every value the runtime keeps a copy of, by the name it has in both files (pinned by a test: a new shared
constant goes here and into the runtime's protocol block, or the test fails)."""

# -- host only -----------------------------------------------------------------------------------------------------

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_NESTING = 100
"""Deepest list/object nesting accepted from the runtime: values this deep would make the host's own
serializers (pydantic, the MCP transport) recurse past Python's limit."""
MAX_NAME_CHARS = 512
"""The host refuses ``tools.describe`` names (and ``call`` tool names) longer than this."""

BOOTSTRAP = (
    "import sys;b=sys.stdin.buffer;n=int(b.readline());"
    f"exec(compile(b.read(n),'ptc_runtime','exec'),{{'__name__':{RUNTIME_MODULE!r}}})"
)
"""What the interpreter is started with: read the runtime's size, then the runtime, from stdin, and run it."""
PYTHON_ARGS = ["-I", "-u", "-c", BOOTSTRAP]


@functools.cache
def runtime_source() -> bytes:
    """The runtime's source: from the installed wheel (``ptc_mcp/_sandbox``) or the source tree (``sandbox/``)."""
    packaged = resources.files("ptc_mcp").joinpath("_sandbox/ptc_runtime.py")
    if packaged.is_file():
        return packaged.read_bytes()
    return (Path(__file__).resolve().parents[2] / "sandbox" / "ptc_runtime.py").read_bytes()


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
    tool: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
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
        raise ProtocolError(f"runtime sent a malformed message: {validation_problems(exc, limit=1)}") from None


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


def encode(message: dict[str, Any]) -> bytes:
    """One host→runtime message as a line of ASCII JSON."""
    return json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def run_message(request: RunRequest, *, with_catalog: bool) -> dict[str, Any]:
    """The host's ``run`` message (the catalog only when the runtime has not seen this version)."""
    return {
        "type": RUN,
        "id": request.run_id,
        "code": request.code,
        "catalog": request.catalog if with_catalog else None,
        "catalog_version": request.catalog_version,
        "max_output_bytes": request.max_output_bytes,
    }


def cancel_message(run_id: str) -> dict[str, Any]:
    """Ask the runtime to cancel run ``run_id`` (the program sees ``CancelledError``)."""
    return {"type": CANCEL, "id": run_id}


def startup_payload() -> bytes:
    """The start-up handshake, first half: what an interpreter started with ``PYTHON_ARGS`` reads from its stdin
    (the runtime's size in bytes on one line, then the runtime). Second half: ``expect_ready`` on its first line."""
    source = runtime_source()
    return str(len(source)).encode("ascii") + b"\n" + source


def expect_ready(line: bytes) -> Ready:
    """The start-up handshake, second half: the runtime's first line must say ``ready``."""
    message = parse_runtime_message(line)
    if not isinstance(message, Ready):
        raise ProtocolError(f"expected {READY!r} from the runtime, got {message.type!r}")
    return message


def not_started(timeout_s: float) -> SandboxFailure:
    """The failure of a handshake that took longer than ``timeout_s``."""
    return SandboxFailure(f"the sandbox's interpreter did not start within {timeout_s:g} s")


async def answer_call(run_id: str, call: Call, call_tool: ToolCallHandler) -> tuple[dict[str, Any], bytes]:
    """Run one tool call for the runtime: the ``result`` message, and that message encoded as a line.

    Whatever goes wrong on the host while answering (a bug, a value that is not JSON) becomes this call's error in
    the program, never a failure of the channel, the run or the server. Encoding here doubles as the check that
    the value is JSON: a value the runtime could not decode becomes this call's error instead of breaking the channel.
    """
    reply: dict[str, Any] = {"type": RESULT, "id": run_id, "call": call.call}
    try:
        reply.update(ok=True, value=await call_tool(call.tool, call.args))
    except RunLimitExceeded:
        raise  # ends the run (a program that keeps calling past its budget)
    except ToolCallError as exc:
        reply.update(ok=False, error={"type": exc.error_type, "message": exc.message})
    except TypeError as exc:
        reply.update(ok=False, error={"type": INVALID_ARGUMENTS, "message": str(exc)})
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


def report_from_done(done: Done) -> RunReport:
    """The ``RunReport`` a ``done`` message stands for (an error type the host does not know is a program error)."""
    if done.ok or done.error is None:
        return RunReport(
            ok=True,
            result=done.result,
            result_repr=done.result_repr,
            tool_calls=done.tool_calls,
            output_dropped=done.output_dropped,
        )
    error = done.error
    error_type: Any = error.type if error.type in get_args(ErrorType) else "program_error"
    return RunReport(
        ok=False,
        error_type=error_type,
        exc_type=error.exc_type,
        message=error.message,
        traceback=error.traceback,
        tool_calls=done.tool_calls,
        output_dropped=done.output_dropped,
    )

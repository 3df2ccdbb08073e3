"""Property: whatever strings the runtime or a downstream tool sends, in whatever field, the host stays whole.

Hypothesis draws strings (lone surrogates, control characters, invalid UTF-8 bytes, floods) and puts them into
every field of every runtime→host message (``output.data``; ``call.tool`` and ``call.args`` keys and values;
``done.result``, ``result_repr``, ``error.type``, ``exc_type``, ``message``, ``traceback``) and into the text of
a downstream tool's result. The lines go through the real ``RuntimeChannel``, ``Executor``, ``ToolBridge``,
audit trail and progress reporter. For every example: a typed result that encodes as UTF-8 JSON and fits the
output budget, every audit line valid UTF-8 JSON with one line per call attempt, every progress notification
encodable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import anyio
import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptc_mcp.audit import AuditLog
from ptc_mcp.bridge import ToolBridge
from ptc_mcp.catalog.model import DownstreamTool
from ptc_mcp.catalog.policy import ToolPolicy
from ptc_mcp.config import LimitsConfig
from ptc_mcp.errors import ErrorType
from ptc_mcp.executor import ExecuteRequest, Executor
from ptc_mcp.progress import LOGGER_NAME, RunReporter
from tests.security.replayed_runtime import ReplayedBackend, line_of

pytestmark = pytest.mark.anyio

BUDGET = 1024
CONTRACT = set(get_args(ErrorType))
RUN = "{RUN}"
INVALID_UTF8 = "\x00INVALID\x00"
"""Stands for raw invalid UTF-8 bytes: replaced in the encoded line, after JSON encoding."""

hostile_chars = st.characters(categories=["Cs", "Cc", "Cf", "L", "N", "P", "S", "Z"])
hostile_text = (
    st.text(hostile_chars, max_size=40)
    | st.sampled_from(["\ud800", "\udfff", "a\udc80b", "\ud83d\ude00", "\x1b[2J", INVALID_UTF8, ""])
    | st.integers(min_value=BUDGET, max_value=200_000).map(lambda n: "\ud800x" * n)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | hostile_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3),
    max_leaves=8,
)


def _line(message: dict[str, Any]) -> bytes:
    return line_of(message).replace(json.dumps(INVALID_UTF8)[1:-1].encode(), b"\xff\xfe\xc3")


messages = st.one_of(
    st.builds(
        lambda stream, data: {"type": "output", "id": RUN, "stream": stream, "data": data},
        st.sampled_from(["stdout", "stderr"]),
        hostile_text,
    ),
    st.builds(
        lambda tool, args: {"type": "call", "id": RUN, "call": 1, "tool": tool, "args": args},
        st.sampled_from(["fx.echo", "@search", "@describe"]) | hostile_text.filter(lambda t: 0 < len(t) <= 512),
        st.dictionaries(hostile_text, json_values, max_size=3),
    ),
)
done_messages = st.builds(
    lambda ok, result, result_repr, error: {
        "type": "done",
        "id": RUN,
        "ok": ok,
        "result": result,
        "result_repr": result_repr,
        "error": error,
    },
    st.booleans(),
    json_values,
    st.none() | hostile_text,
    st.none()
    | st.fixed_dictionaries(
        {
            "type": st.sampled_from(sorted(CONTRACT)) | hostile_text,
            "exc_type": st.none() | hostile_text,
            "message": st.none() | hostile_text,
            "traceback": st.none() | hostile_text,
        }
    ),
)


class HostileTool:
    """A ``ToolSource`` with one tool, ``fx.echo``, whose result text is drawn by hypothesis."""

    catalog_version = 1
    failures: dict[str, str] = {}

    def __init__(self, text: str, is_error: bool) -> None:
        self.text = text
        self.is_error = is_error

    def tools(self) -> list[DownstreamTool]:
        return [DownstreamTool("fx", types.Tool(name="echo", input_schema={"type": "object"}))]

    async def call_tool(self, server: str, tool: str, arguments: Any = None, timeout_s: Any = None) -> Any:
        content = [types.TextContent(type="text", text=self.text)]
        return types.CallToolResult(content=content, is_error=self.is_error)


def _returned_bytes(result: Any) -> int:
    fields = [result.stdout, result.stderr, result.result_repr]
    if result.error is not None:
        fields += [result.error.exc_type, result.error.message, result.error.traceback]
    size = sum(len(text.encode()) for text in fields if text)
    if result.result is not None:
        size += len(json.dumps(result.result, ensure_ascii=False).encode())
    return size


@given(
    st.lists(messages, max_size=6),
    st.none() | done_messages,
    st.text(hostile_chars, max_size=30) | st.sampled_from(['"\\ud800"', '{"k\\udfff": ["\\udc00"]}', "[[[[1]]]]"]),
    st.booleans(),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_random_strings_in_every_runtime_and_tool_field_never_break_the_host(
    tmp_path: Path, lines: list[dict[str, Any]], done: dict[str, Any] | None, tool_text: str, tool_fails: bool
) -> None:
    audit_file = tmp_path / "audit.jsonl"
    audit_file.unlink(missing_ok=True)
    audit = AuditLog(file=audit_file, include_arguments=True)
    backend = ReplayedBackend([*lines, done] if done is not None else lines, encode=_line)
    bridge = ToolBridge(HostileTool(tool_text, tool_fails), ToolPolicy(["*"], []))
    limits = LimitsConfig(timeout_s=10, max_output_bytes=BUDGET, max_tool_calls=4)
    notifications: list[bytes] = []

    async def send_progress(progress: float, message: str) -> None:
        notifications.append(json.dumps({"progress": progress, "message": message}, ensure_ascii=False).encode())

    async def send_log(level: str, data: dict[str, Any]) -> None:
        params = types.LoggingMessageNotificationParams(level=level, data=data, logger=LOGGER_NAME)  # type: ignore[arg-type]
        notifications.append(params.model_dump_json().encode("utf-8"))

    reporter = RunReporter(send_progress=send_progress, send_log=send_log, max_log_bytes=BUDGET)
    async with Executor(backend, bridge, limits, stateless=True, audit=audit) as executor:
        with anyio.fail_after(30):
            result = await executor.execute(ExecuteRequest(code="hostile"), events=reporter)
        await reporter.flush()
    assert result.error_type is None or result.error_type in CONTRACT
    encoded = result.to_call_tool_result()
    assert "could not be encoded" not in json.dumps(encoded.structured_content)  # no field needed the last guard
    encoded.model_dump_json(by_alias=True).encode("utf-8")
    assert _returned_bytes(result) <= BUDGET + 400
    audit_lines = [json.loads(line) for line in audit_file.read_bytes().decode("utf-8").splitlines()]
    [run_line] = [line for line in audit_lines if line["event"] == "run"]
    call_lines = [line for line in audit_lines if line["event"] == "call"]
    assert len(call_lines) == run_line["call_attempts"]
    assert run_line["error_type"] == result.error_type
    assert not audit.failing

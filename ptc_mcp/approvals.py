"""Approvals: nested calls a person must allow before they run.

``tools.approve`` lists globs on ``server.tool`` (the same globs as ``tools.allow``); with
``tools.approve_destructive`` every tool whose server marks it ``destructiveHint: true`` and not
``readOnlyHint: true`` needs approval too. Before such a call reaches its server, the client of the run is asked
through elicitation: the server, the tool, the arguments (capped) and the run's session. Accept → the call runs;
decline, cancel, no answer within ``limits.input_timeout_s``, or a client without elicitation → ``ToolError``
with ``error_type == "tool_denied"``, and nothing is sent downstream. The form has one checkbox that allows the
same tool for the rest of the run; a decline holds for the rest of the run too (the same tool is refused without
asking again). Every decision is reported through ``on_decision`` (the audit trail).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import mcp_types as types

from ptc_mcp.catalog.model import DownstreamTool
from ptc_mcp.catalog.policy import compile_globs
from ptc_mcp.errors import ToolCallError
from ptc_mcp.interaction import RunInteraction
from ptc_mcp.output import safe_text

__all__ = ["APPROVAL_META_KEY", "ApprovalRule", "Decision", "RunApprovals"]

MAX_ARGUMENT_CHARS = 2000
"""How much of the arguments' JSON the question shows; longer arguments are cut with a marker."""
REMEMBER_FIELD = "allow_for_rest_of_run"
APPROVAL_META_KEY = "dev.ptc-mcp/approval"
"""``_meta`` key of the question: the same facts as the message, as data, for clients that render their own UI."""

Decision = Literal[
    "approved", "approved_for_run", "approved_earlier", "declined", "declined_earlier", "cancelled", "unanswered"
]
DecisionCallback = Callable[[str, Decision, str | None], None]
"""Called with the tool (``server.tool``), the decision and, for ``unanswered``, why."""


@dataclass(frozen=True)
class ApprovalRule:
    """Which nested calls need a person's approval."""

    patterns: Sequence[str] = ()
    destructive: bool = False
    _compiled: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", tuple(self.patterns))
        object.__setattr__(self, "_compiled", compile_globs(self.patterns))

    @property
    def active(self) -> bool:
        return bool(self.patterns) or self.destructive

    def reason(self, name: str, annotations: types.ToolAnnotations | None) -> str | None:
        """Why ``name`` needs approval (shown to the person), or ``None`` when it does not."""
        if self._compiled is not None and self._compiled.match(name):
            return "it matches tools.approve"
        if (
            self.destructive
            and annotations is not None
            and annotations.destructive_hint is True
            and annotations.read_only_hint is not True
        ):
            return "its server marks it destructive (tools.approve_destructive)"
        return None


@dataclass
class RunApprovals:
    """The approvals of one run: asks the run's client, remembers "for the rest of this run"."""

    rule: ApprovalRule
    interaction: RunInteraction
    on_decision: DecisionCallback | None = None
    approved: set[str] = field(default_factory=set)
    declined: set[str] = field(default_factory=set)
    """Tools the person declined in this run: not asked about again (a program looping over a refused call must
    not flood the person with the same question)."""
    _lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def check(self, tool: DownstreamTool, arguments: dict[str, Any]) -> None:
        """Return when the call may run; raise ``ToolCallError("tool_denied")`` when it may not."""
        name = tool.qualified_name
        reason = self.rule.reason(name, tool.tool.annotations)
        if reason is None:
            return
        # One question at a time per run: calls gathered in parallel wait, and see an "allow for the rest of
        # this run" given to the first.
        async with self._lock:
            if name in self.approved:
                self._decided(name, "approved_earlier")
                return
            if name in self.declined:
                self._decided(name, "declined_earlier")
                raise ToolCallError("tool_denied", f"the user declined calls to {name} earlier in this run")
            answer = await self.interaction.elicit(self._question(tool, arguments, reason))
            if isinstance(answer, types.ElicitResult) and answer.action == "decline":
                self.declined.add(name)
        if isinstance(answer, types.ErrorData):
            self._decided(name, "unanswered", answer.message)
            raise ToolCallError("tool_denied", f"{name} needs approval and none was given: {answer.message}")
        if answer.action != "accept":
            decision: Decision = "declined" if answer.action == "decline" else "cancelled"
            self._decided(name, decision)
            raise ToolCallError("tool_denied", f"the user {decision} the call to {name}")
        if (answer.content or {}).get(REMEMBER_FIELD) is True:
            self.approved.add(name)
            self._decided(name, "approved_for_run")
        else:
            self._decided(name, "approved")

    def _decided(self, name: str, decision: Decision, why: str | None = None) -> None:
        if self.on_decision is not None:
            self.on_decision(name, decision, why)

    def _question(self, tool: DownstreamTool, arguments: dict[str, Any], reason: str) -> types.ElicitRequestFormParams:
        shown = capped_arguments(arguments)
        session = self.interaction.session or "(none: a stateless run)"
        message = (
            f"A program wants to call {tool.qualified_name}, which needs your approval because {reason}.\n"
            f"Server: {tool.server}\nTool: {tool.tool.name}\nArguments: {shown}\n"
            f"Session: {session} (run {self.interaction.run_id})\n"
            "Accept to let this call run; decline to refuse it (the program gets a ToolError)."
        )
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                REMEMBER_FIELD: {
                    "type": "boolean",
                    "title": f"Also allow {tool.qualified_name} for the rest of this run",
                    "default": False,
                }
            },
        }
        meta = {
            APPROVAL_META_KEY: {
                "server": tool.server,
                "tool": tool.tool.name,
                "arguments": shown,
                "session": self.interaction.session,
                "run": self.interaction.run_id,
            }
        }
        return types.ElicitRequestFormParams(message=message, requested_schema=schema, _meta=meta)


def capped_arguments(arguments: dict[str, Any]) -> str:
    """The arguments as JSON, made safe, at most ``MAX_ARGUMENT_CHARS`` with a marker that says what was cut."""
    text = safe_text(json.dumps(arguments, ensure_ascii=False, default=str, sort_keys=True))
    if len(text) <= MAX_ARGUMENT_CHARS:
        return text
    return f"{text[:MAX_ARGUMENT_CHARS]}… [{len(text) - MAX_ARGUMENT_CHARS} more characters not shown]"

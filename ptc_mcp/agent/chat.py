"""``ptc-mcp chat``: talk to a Bedrock model that uses your MCP tools, in a plain terminal.

The answer goes to stdout; tool activity, per-turn token usage and a spinner (only when stderr is a
terminal) go to stderr. Type ``/usage`` for the conversation's totals, ``/quit`` (or end of input) to leave.
Approvals and downstream servers' forms are asked in the terminal (``ptc_mcp.agent.questions``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from typing import TextIO

import anyio

from ptc_mcp.agent.converse import BedrockConverse, parse_model_spec
from ptc_mcp.agent.loop import (
    DEFAULT_SYSTEM_PROMPT,
    Agent,
    AgentEvent,
    ModelFinished,
    ModelStarted,
    ToolFinished,
    ToolStarted,
    Usage,
)
from ptc_mcp.agent.questions import TerminalQuestions
from ptc_mcp.agent.toolsets import Mode, open_toolset

__all__ = ["Activity", "run_chat"]

FRAMES = "|/-\\"
PREVIEW_CHARS = 160


def _preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _arguments(arguments: dict[str, object]) -> str:
    if set(arguments) == {"code"} or "code" in arguments:
        code = str(arguments.get("code", ""))
        return f"<program: {len(code.splitlines())} lines>"
    return _preview(json.dumps(arguments, ensure_ascii=False), 120)


def usage_line(usage: Usage, seconds: float | None = None) -> str:
    line = (
        f"{usage.model_calls} model call{'s' if usage.model_calls != 1 else ''} · {usage.input_tokens:,} in · "
        f"{usage.output_tokens:,} out · {usage.total_tokens:,} tokens"
    )
    return f"{line} · {seconds:.1f} s" if seconds is not None else line


@dataclass
class Activity:
    """Shows what the agent is doing on ``stream``; a spinner runs only on a terminal."""

    stream: TextIO
    label: str = ""
    running: int = 0

    @property
    def animated(self) -> bool:
        return self.stream.isatty()

    def _clear(self) -> None:
        if self.animated and self.label:
            self.stream.write("\r\x1b[K")

    def say(self, line: str) -> None:
        self._clear()
        self.stream.write(line + "\n")
        self.stream.flush()

    def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, ModelStarted):
            self.label = "model is thinking"
        elif isinstance(event, ModelFinished):
            self.say(f"  · model call {event.call}: {usage_line(event.usage)} ({event.stop_reason})")
            self.label = ""
        elif isinstance(event, ToolStarted):
            self.running += 1
            self.say(f"  → {event.name} {_arguments(event.arguments)}")
            self.label = "program running" if "code" in event.arguments else "tool running"
        elif isinstance(event, ToolFinished):
            self.running -= 1
            mark = "✗" if event.outcome.is_error else "←"
            self.say(f"  {mark} {event.name} ({event.seconds:.2f} s): {_preview(event.outcome.text)}")
            if not self.running:
                self.label = ""

    async def spin(self) -> None:
        """Redraw the spinner until cancelled (does nothing visible off a terminal)."""
        frame = 0
        while True:
            if self.animated and self.label:
                self.stream.write(f"\r{FRAMES[frame % len(FRAMES)]} {self.label}…")
                self.stream.flush()
                frame += 1
            await anyio.sleep(0.1)


async def _read_line(prompt: str, interactive: bool) -> str | None:
    def read() -> str | None:
        if interactive:
            sys.stderr.write(prompt)
            sys.stderr.flush()
        line = sys.stdin.readline()
        return None if line == "" else line.rstrip("\n")

    return await anyio.to_thread.run_sync(read, abandon_on_cancel=True)


async def chat(model: BedrockConverse, mode: Mode, config_path: str, system: str, out: TextIO = sys.stdout) -> int:
    activity = Activity(sys.stderr)
    interactive = sys.stdin.isatty()

    async def ask(prompt: str) -> str | None:
        label, activity.label = activity.label, ""  # no spinner over the question
        activity.say("")
        try:
            return await _read_line(prompt, True)
        finally:
            activity.label = label

    questions = TerminalQuestions(ask, sys.stderr)
    with tempfile.TemporaryFile("w+", prefix="ptc-mcp-chat-") as server_log:
        try:
            async with open_toolset(mode, config_path, errlog=server_log, elicitation=questions) as tools:
                agent = Agent(model, tools, system=system, on_event=activity.on_event)
                names = [spec["toolSpec"]["name"] for spec in tools.specs()]
                activity.say(f"ptc-mcp chat · {model.model_id} · mode {mode} · tools: {', '.join(names)}")
                activity.say("/usage shows the totals, /quit leaves.")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(activity.spin)
                    while True:
                        line = await _read_line("you> ", interactive)
                        if line is None or line.strip() == "/quit":
                            break
                        if not line.strip():
                            continue
                        if line.strip() == "/usage":
                            activity.say(f"conversation: {usage_line(agent.usage)}")
                            continue
                        turn = await agent.ask(line)
                        activity.say(f"[turn: {usage_line(turn.usage, turn.wall_s)}]")
                        out.write(turn.text + "\n")
                        out.flush()
                    tg.cancel_scope.cancel()
                activity.say(f"conversation: {usage_line(agent.usage)}")
        except Exception:
            server_log.seek(0)
            tail = server_log.read()[-2000:]
            if tail.strip():
                sys.stderr.write(f"ptc-mcp serve said:\n{tail}\n")
            raise
    return 0


def run_chat(args: argparse.Namespace) -> int:
    """The ``chat`` subcommand."""
    try:
        model_id = parse_model_spec(args.model)
    except ValueError as exc:
        sys.stderr.write(f"ptc-mcp: {exc}\n")
        return 2
    model = BedrockConverse(model_id, region=args.region, endpoint_url=args.endpoint_url)
    system = args.system if args.system is not None else DEFAULT_SYSTEM_PROMPT
    try:
        return anyio.run(chat, model, args.mode, args.config, system)
    except KeyboardInterrupt:
        return 130

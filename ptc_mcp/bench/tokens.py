"""``ptc-mcp bench tokens``: the agent in both modes on the benchmark tasks, tokens summed per mode.

With the scripted model the Bedrock emulator counts each Converse call (``ptc_mcp.emulators.usage``, a real
offline ``cl100k_base`` BPE over exactly what a model reads and writes); with a real model Bedrock reports them.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ptc_mcp.agent.converse import BedrockConverse, parse_model_spec
from ptc_mcp.agent.loop import Agent, Usage
from ptc_mcp.agent.toolsets import MODES, open_toolset
from ptc_mcp.bench.png import Bar, BarGroup, write_bar_chart
from ptc_mcp.bench.report import machine
from ptc_mcp.bench.scripted import TrajectoryModel
from ptc_mcp.config import Config
from ptc_mcp.emulators.bedrock import ConverseError, ConverseRequest, ModelReply, run_emulator
from ptc_mcp.emulators.usage import TOKENIZER, count_tokens
from ptc_mcp.errors import SandboxUnavailableError
from ptc_mcp.sandboxes import create_backend

if TYPE_CHECKING:
    from ptc_mcp.bench.tasks import Task

__all__ = [
    "TOKENIZER",
    "bench_config",
    "format_markdown",
    "format_table",
    "run_token_bench",
    "write_chart",
]

logger = logging.getLogger(__name__)

SCRIPTED = "scripted"
MAX_MODEL_CALLS = 100
"""Per task and mode: room for sequential trajectories of a few dozen tool calls."""
SIMULATED_NOTE = (
    "SIMULATED: scripted trajectories (what a competent model would do) replayed through the real agent, "
    "boto3, the Bedrock Converse emulator and real MCP servers; tokens counted with {tokenizer}."
)


@dataclass
class ModeRun:
    """One task in one mode."""

    usage: Usage
    correct: bool
    wall_s: float
    tool_calls: int
    answer: str

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.usage.as_dict(),
            "correct": self.correct,
            "wall_s": round(self.wall_s, 3),
            "tool_calls": self.tool_calls,
            "answer": self.answer,
        }


class _CurrentPolicy:
    """The emulator's model: replays the trajectory of whichever task runs now."""

    def __init__(self) -> None:
        self.model: TrajectoryModel | None = None

    def reply(self, request: ConverseRequest) -> ModelReply:
        if self.model is None:
            raise ConverseError("ModelNotReadyException", "no scripted task is running")
        return self.model.reply(request)


def _sandbox_settings() -> dict[str, Any]:
    try:
        create_backend(Config())
    except SandboxUnavailableError as exc:
        logger.warning("no isolated sandbox (%s): the benchmark's own programs run unisolated", exc)
        return {"kind": "auto", "allow_unisolated": True}
    return {"kind": "auto"}


def bench_config(tasks: Sequence[Task]) -> dict[str, Any]:
    """A config with every server the tasks need (same name, same definition), on the best sandbox here."""
    servers: dict[str, Any] = {}
    for task in tasks:
        for name, server in task.servers.items():
            if name in servers and servers[name] != server:
                raise ValueError(f"tasks define server {name!r} differently; pass one --config for them")
            servers[name] = server
    # The audit trail would interleave with the benchmark's own output; it has nothing to measure here.
    return {"mcpServers": servers, "sandbox": _sandbox_settings(), "audit": {"enabled": False}}


async def run_token_bench(
    tasks: Sequence[Task],
    *,
    model: str = SCRIPTED,
    config_path: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    sequential: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every task in both modes; returns the report (see ``docs/tokens.md`` for its fields).

    ``model`` is ``"scripted"`` (replayed trajectories against the local emulator, BPE token counts) or
    ``"bedrock:<model-id>"`` (a real model, Bedrock's reported usage). ``sequential`` replays traditional
    trajectories one tool call per model call instead of parallel tool uses (scripted model only).
    """
    simulated = model == SCRIPTED
    model_id = SCRIPTED if simulated else parse_model_spec(model)
    if simulated:
        count_tokens("")  # fail now, not mid-run, when the BPE is missing
    say = progress or (lambda _: None)
    runs: dict[str, dict[str, ModeRun]] = {task.name: {} for task in tasks}
    current = _CurrentPolicy()
    async with AsyncExitStack() as stack:
        if config_path is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="ptc-mcp-tokens-"))
            config_path = str(Path(folder) / "config.json")
            await anyio.Path(config_path).write_text(json.dumps(bench_config(tasks)), encoding="utf-8")
        if simulated:
            url = await stack.enter_async_context(run_emulator(current))
            client = BedrockConverse(model_id, endpoint_url=url, credentials=(SCRIPTED, SCRIPTED))
        else:
            client = BedrockConverse(model_id, region=region, endpoint_url=endpoint_url)
        # ptc-mcp serve's stderr (its logs) goes to a file, so it cannot interleave with the report.
        server_log = stack.enter_context(tempfile.TemporaryFile("w+", prefix="ptc-mcp-serve-"))  # noqa: SIM115
        for mode in MODES:
            async with open_toolset(mode, config_path, errlog=server_log) as tools:
                for task in tasks:
                    say(f"{task.name} · {mode}")
                    current.model = TrajectoryModel(
                        task.policy(mode), one_call_per_turn=sequential and mode == "traditional"
                    )
                    agent = Agent(client, tools, max_model_calls=MAX_MODEL_CALLS)
                    turn = await agent.ask(task.prompt)
                    try:
                        correct = bool(task.check(turn.text))
                    except Exception:
                        logger.exception("the checker of %s failed", task.name)
                        correct = False
                    runs[task.name][mode] = ModeRun(turn.usage, correct, turn.wall_s, turn.tool_calls, turn.text)
    rows = []
    for task in tasks:
        traditional, ptc = runs[task.name]["traditional"], runs[task.name]["ptc"]
        before = traditional.usage.total_tokens
        reduction = (1 - ptc.usage.total_tokens / before) if before else 0.0
        rows.append(
            {
                "name": task.name,
                "shape": task.shape,
                "traditional": traditional.as_dict(),
                "ptc": ptc.as_dict(),
                "reduction": round(reduction, 4),
            }
        )
    tokenizer = TOKENIZER if simulated else "reported by Bedrock (usage of each Converse response)"
    return {
        "tasks": rows,
        "tokenizer": tokenizer,
        "model": model if not simulated else "scripted (replayed trajectories)",
        "simulated": simulated,
        "traditional_tool_calls": ("sequential" if sequential else "parallel") if simulated else "model's choice",
        "note": SIMULATED_NOTE.format(tokenizer=TOKENIZER) if simulated else f"Real model on Bedrock: {model_id}.",
        "machine": machine(),
    }


def format_table(report: dict[str, Any]) -> str:
    """The terminal table."""
    header = f"{'task':<24} {'mode':<12} {'calls':>5} {'input':>8} {'output':>7} {'total':>8} {'reduction':>9} "
    header += f"{'wall s':>7}  correct"
    lines = [
        report["note"],
        f"model: {report['model']} · tokenizer: {report['tokenizer']} · traditional tool calls: "
        f"{report['traditional_tool_calls']}",
        "",
        header,
    ]
    lines.append("-" * len(header))
    for row in report["tasks"]:
        for mode in MODES:
            run = row[mode]
            reduction = f"{row['reduction']:>9.1%}" if mode == "ptc" else " " * 9
            lines.append(
                f"{row['name'] if mode == 'traditional' else '':<24} {mode:<12} {run['model_calls']:>5} "
                f"{run['input_tokens']:>8,} {run['output_tokens']:>7,} {run['total_tokens']:>8,} {reduction} "
                f"{run['wall_s']:>7.2f}  {'yes' if run['correct'] else 'NO'}"
            )
    return "\n".join(lines)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def format_markdown(report: dict[str, Any], chart: str | None) -> str:
    """The ``tokens`` section of docs/benchmarks.md."""
    kind = "**Simulated trajectories.**" if report["simulated"] else "**A real model on Bedrock.**"
    calls = report["traditional_tool_calls"]
    variant = " (`--sequential`: one tool call per model call)" if calls == "sequential" else ""
    lines = [
        f"## Tokens: traditional tool calling vs PTC{variant}",
        "",
        f"{kind} {_sentence(report['note'].removeprefix('SIMULATED: '))} Model: {report['model']}. "
        f"Tokenizer: {report['tokenizer']}. "
        f"Traditional tool calls: {calls}. {report['machine']}. Written by `ptc-mcp bench tokens"
        f"{' --sequential' if calls == 'sequential' else ''}`.",
        "How the counts are made, and how to run your own tasks: [docs/tokens.md](tokens.md).",
        "",
        "| task | what it stresses | mode | model calls | input | output | total | reduction | wall (s) | correct |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["tasks"]:
        for mode in MODES:
            run = row[mode]
            first = mode == "traditional"
            reduction = "" if first else f"**{row['reduction']:.1%}**"
            lines.append(
                f"| {row['name'] if first else ''} | {row['shape'] if first else ''} | {mode} | {run['model_calls']} | "
                f"{run['input_tokens']:,} | {run['output_tokens']:,} | {run['total_tokens']:,} | "
                f"{reduction} | {run['wall_s']:.2f} | "
                f"{'yes' if run['correct'] else '**no**'} |"
            )
    if chart:
        lines += ["", f"![total tokens per task, traditional vs ptc]({chart})"]
    return "\n".join(lines) + "\n"


def write_chart(report: dict[str, Any], path: str | Path) -> None:
    groups = [
        BarGroup(
            row["name"],
            [Bar(row[mode]["total_tokens"], f"{row[mode]['total_tokens']:,}") for mode in MODES],
            f"{-row['reduction']:+.1%} tokens",
        )
        for row in report["tasks"]
    ]
    if report["simulated"]:
        label = f"simulated, {report['traditional_tool_calls']} tool calls, {report['tokenizer']}"
    else:
        label = f"{report['model']}, tokens reported by Bedrock"
    write_bar_chart(
        path,
        "Total tokens per task: traditional tool calling vs PTC",
        label,
        list(MODES),
        groups,
    )


def run_from_cli(args: Any) -> dict[str, Any]:
    """``ptc-mcp bench tokens``: run, print the table, write the docs section and chart; returns the report."""
    import sys

    from ptc_mcp.bench.report import write_section
    from ptc_mcp.bench.tasks import DEFAULT_TASKS, load_tasks

    tasks = load_tasks(args.tasks or DEFAULT_TASKS)
    tty = sys.stderr.isatty()

    def progress(message: str) -> None:
        if tty:
            sys.stderr.write(f"\r\x1b[K  running {message}…")
            sys.stderr.flush()

    report: dict[str, Any] = anyio.run(
        functools.partial(
            run_token_bench,
            tasks,
            model=args.model,
            config_path=args.config,
            region=args.region,
            endpoint_url=args.endpoint_url,
            sequential=args.sequential,
            progress=progress,
        )
    )
    if tty:
        sys.stderr.write("\r\x1b[K")
    print(format_table(report), file=sys.stderr if args.json else sys.stdout)
    if args.output:
        output = Path(args.output)
        section = "tokens-sequential" if args.sequential else "tokens"
        chart = output.parent / f"{section}.png"
        write_chart(report, chart)
        write_section(output, section, format_markdown(report, chart.name))
        print(f"wrote {output} (section {section}) and {chart}", file=sys.stderr)
    return report

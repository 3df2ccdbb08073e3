"""Benchmark tasks: a prompt, a checker, and the trajectory a competent model would take in each mode.

A task is data plus a checker, so users can measure their own workflows::

    from ptc_mcp.bench.tasks import Task
    from ptc_mcp.bench.scripted import Answer, call, calls

    def traditional(t):                       # t: ptc_mcp.bench.scripted.Transcript
        if t.round == 0:
            return calls(call("crm.find_accounts", region="EMEA"))
        return Answer(f"{len(t.last[0].items)} accounts")

    def ptc(t):
        if t.round == 0:
            return calls(call("execute_program", code="print(len(await crm.find_accounts(region='EMEA')))"))
        return Answer(f"{t.last[0].text.splitlines()[0]} accounts")

    TASKS = [Task("emea_accounts", "How many EMEA accounts are there?", check=lambda answer: "42" in answer,
                  traditional=traditional, ptc=ptc,
                  servers={"crm": {"command": "python", "args": ["-m", "my_crm_server"]}})]

and run ``ptc-mcp bench tokens --tasks my_tasks.py`` (or ``--tasks package.module:TASKS``). The trajectories
are only used with the scripted model; with ``--model bedrock:<id>`` the real model decides, and the same
checker judges its answer. Final answers of the shipped tasks are computed from what the tools returned (or
what the program printed) as the run goes, never written in advance.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptc_mcp.bench.scripted import Policy

__all__ = ["DEFAULT_TASKS", "Task", "load_tasks"]

DEFAULT_TASKS = "ptc_mcp.bench.tasks.expenses:TASKS"


@dataclass(frozen=True)
class Task:
    """One benchmark task. ``servers`` are the ``mcpServers`` entries it needs (merged across tasks)."""

    name: str
    prompt: str
    check: Callable[[str], bool]
    """Is this final answer right? (Compares against the task's ground truth.)"""
    traditional: Policy
    ptc: Policy
    servers: Mapping[str, Any] = field(default_factory=dict)
    shape: str = ""
    """A few words on what the task stresses, for the report."""

    def policy(self, mode: str) -> Policy:
        return self.traditional if mode == "traditional" else self.ptc


def _from_file(path: Path, attr: str) -> Any:
    name = f"_ptc_mcp_user_tasks.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load tasks from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return getattr(module, attr)


def load_tasks(spec: str = DEFAULT_TASKS) -> list[Task]:
    """Tasks from ``path.py``, ``path.py:ATTR``, ``package.module`` or ``package.module:ATTR``.

    ``ATTR`` defaults to ``TASKS``; it may be a ``Task``, an iterable of tasks, or a function returning either.
    """
    target, _, attr = spec.partition(":")
    attr = attr or "TASKS"
    try:
        if target.endswith(".py") or Path(target).is_file():
            path = Path(target)
            if not path.is_file():
                raise ValueError(f"no such tasks file: {target}")
            value = _from_file(path.resolve(), attr)
        else:
            value = getattr(importlib.import_module(target), attr)
    except AttributeError:
        raise ValueError(f"{target} has no attribute {attr!r} (expected a list of Task)") from None
    if callable(value) and not isinstance(value, Task):
        value = value()
    tasks = [value] if isinstance(value, Task) else list(value) if isinstance(value, Iterable) else []
    if not tasks or not all(isinstance(task, Task) for task in tasks):
        raise ValueError(f"{spec} must be a Task or a non-empty list of Task")
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"{spec}: task names must be unique")
    return tasks

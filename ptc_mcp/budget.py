"""One output budget for everything a run returns: stdout, stderr, the result, its repr and the error.

``limits.max_output_bytes`` bounds the sum of every field of a ``RunResult`` that carries text from the program
(plus short truncation markers). The output (stdout and stderr) and the answer (error type, message, result repr,
result, traceback) share the budget fairly: each group may use half, and what one leaves unused the other may
take. Inside the output, stdout and stderr share the same way; inside the answer, fields are filled in the order
above, so the error type and message survive a flood through the traceback. A JSON ``result`` that does not fit
is left out whole (its ``result_repr`` remains, truncated); a traceback keeps its last lines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ptc_mcp.output import OutputCollector
from ptc_mcp.results import RunError

__all__ = ["BudgetedRun", "fair_share", "fit_run"]


def _size(text: str | None) -> int:
    return len(text.encode("utf-8")) if text else 0


def fair_share(budget: int, wants: Sequence[int]) -> list[int]:
    """Split ``budget`` over ``wants`` max-min fairly: nobody gets more than they want, the rest share equally."""
    grants = [0] * len(wants)
    remaining = budget
    pending = sorted(range(len(wants)), key=lambda i: wants[i])
    while pending:
        each = remaining // len(pending)
        smallest = pending[0]
        if wants[smallest] <= each:
            grants[smallest] = wants[smallest]
            remaining -= wants[smallest]
            pending.pop(0)
            continue
        for index in pending:
            grants[index] = each
        break
    return grants


def _in_order(budget: int, wants: Sequence[int]) -> list[int]:
    grants = []
    for want in wants:
        grant = min(want, budget)
        grants.append(grant)
        budget -= grant
    return grants


def _clip(text: str, grant: int, *, keep_tail: bool = False) -> str:
    """``text`` cut to ``grant`` bytes (at a character boundary) with a marker saying how much was cut."""
    encoded = text.encode("utf-8")
    if len(encoded) <= grant:
        return text
    if keep_tail:
        kept = encoded[len(encoded) - grant :].decode("utf-8", "ignore") if grant else ""
        return f"[{len(encoded) - _size(kept)} bytes not shown] …{kept}"
    kept = encoded[:grant].decode("utf-8", "ignore")
    return f"{kept}… [{len(encoded) - _size(kept)} more bytes not shown]"


def _clip_optional(text: str | None, grant: int, *, keep_tail: bool = False) -> str | None:
    return None if text is None else _clip(text, grant, keep_tail=keep_tail)


@dataclass
class BudgetedRun:
    """What survives the budget: the fields to return, and how many bytes were returned and cut."""

    stdout: str
    stderr: str
    result: object
    result_repr: str | None
    error: RunError | None
    returned_bytes: int
    dropped_bytes: int

    @property
    def truncated(self) -> bool:
        return self.dropped_bytes > 0


def fit_run(
    cap: int, output: OutputCollector, result: object, result_repr: str | None, error: RunError | None
) -> BudgetedRun:
    """Fit one run's fields into ``cap`` bytes; ``output`` holds what the collector kept of stdout and stderr."""
    stdout, stderr = output.body("stdout"), output.body("stderr")
    result_json = None if result is None else json.dumps(result, ensure_ascii=False)
    exc_type, message, traceback = (error.exc_type, error.message, error.traceback) if error else (None, None, None)
    answer_wants = [_size(text) for text in (exc_type, message, result_repr, result_json, traceback)]
    output_wants = [_size(stdout), _size(stderr)]
    output_grant, answer_grant = fair_share(cap, [sum(output_wants), sum(answer_wants)])
    stdout_grant, stderr_grant = fair_share(output_grant, output_wants)
    grants = _in_order(answer_grant, answer_wants)
    if result_json is not None and grants[3] < answer_wants[3]:
        result, grants[3] = None, 0  # a cut JSON value is not JSON: leave it out whole, its repr stays
    output_dropped = output.dropped + sum(output_wants) - stdout_grant - stderr_grant
    kept_stdout = stdout.encode("utf-8")[:stdout_grant].decode("utf-8", "ignore")
    if output_dropped:
        kept_stdout += f"\n[... output truncated at {cap} bytes: {output_dropped} more bytes not shown ...]\n"
    if error is not None:
        error = RunError(
            type=error.type,
            message=_clip(error.message, grants[1]),
            exc_type=_clip_optional(exc_type, grants[0]),
            traceback=_clip_optional(traceback, grants[4], keep_tail=True) if grants[4] else None,
        )
    return BudgetedRun(
        stdout=kept_stdout,
        stderr=_clip(stderr, stderr_grant),
        result=result,
        result_repr=_clip_optional(result_repr, grants[2]),
        error=error,
        returned_bytes=stdout_grant + stderr_grant + sum(grants),
        dropped_bytes=output_dropped + sum(answer_wants) - sum(grants),
    )

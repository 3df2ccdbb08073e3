"""Five tasks over the example expense server (``ptc_mcp.examples.expenses``), each with its ground truth.

Each task's final answer is computed by a small function from what the tools returned (traditional) or what
the program printed (ptc), and both modes format it with the same function, so the answers are identical
when the work is right. Checkers compare against ``ptc_mcp.examples.expenses_data``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ptc_mcp.bench.scripted import Answer, Step, Transcript, call, calls
from ptc_mcp.bench.tasks import Task
from ptc_mcp.examples import expenses_data as data

__all__ = ["SERVERS", "TASKS"]

SERVERS: dict[str, Any] = {"expenses": {"command": sys.executable, "args": ["-m", "ptc_mcp.examples.expenses"]}}
QUARTERS = data.QUARTERS
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _cents(value: float | Decimal | str) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _numbers(text: str) -> set[Decimal]:
    return {_cents(match.replace(",", "")) for match in _NUMBER.findall(text)}


def _counted(records: Iterable[dict[str, Any]], category: str | None = None) -> Decimal:
    """Approved and pending amounts (rejected claims never count), optionally of one category."""
    return sum(
        (
            Decimal(str(r["amount"]))
            for r in records
            if r["status"] != "rejected" and (category is None or r["category"] == category)
        ),
        Decimal(0),
    )


def _program_json(t: Transcript) -> Any:
    """The JSON line the task's program printed (its first line of output)."""
    return json.loads(t.last[0].text.splitlines()[0])


def _mentions(answer: str, wanted: Iterable[str], others: Iterable[str]) -> bool:
    ids = set(re.findall(r"\b[A-Z]\d+\b", answer))
    return set(wanted) <= ids and not (ids & (set(others) - set(wanted)))


# -- 1. the expense audit: who exceeded their Q3 travel budget ---------------------------------------------

AUDIT_PROGRAM = """\
team = await expenses.get_team_members(department='engineering')
ids = [p['id'] for p in team]
budgets = await asyncio.gather(*[expenses.get_custom_budget(user_id=i) for i in ids])
claims = await asyncio.gather(*[expenses.get_expenses(employee_id=i, quarter='Q3') for i in ids])
for p, b, rs in zip(team, budgets, claims):
    limit = b['travel_budget'] if b else 5000.0
    spent = round(sum(r['amount'] for r in rs if r['category'] == 'travel' and r['status'] != 'rejected'), 2)
    if spent > limit:
        print(p['id'], p['name'], spent, limit, sep=';')
"""


def _audit_rows(t: Transcript) -> list[dict[str, Any]]:
    """The audit program's lines ``id;name;spent;budget`` (the status line after them is not a row)."""
    rows = []
    for line in t.last[0].text.splitlines():
        fields = line.split(";")
        if len(fields) == 4:
            rows.append({"id": fields[0], "name": fields[1], "spent": float(fields[2]), "budget": float(fields[3])})
    return rows


def audit_answer(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No engineer exceeded their Q3 travel budget."
    lines = [f"{len(rows)} engineers exceeded their Q3 travel budget:"]
    for row in rows:
        over = _cents(row["spent"]) - _cents(row["budget"])
        lines.append(
            f"- {row['name']} ({row['id']}): spent {row['spent']:,.2f} USD of a {row['budget']:,.2f} USD budget "
            f"(over by {over:,.2f} USD)"
        )
    return "\n".join(lines)


def audit_traditional(t: Transcript) -> Step:
    if t.round == 0:
        return calls(call("expenses.get_team_members", department="engineering"))
    if t.round == 1:
        team = t.last[0].items
        return calls(
            *[call("expenses.get_custom_budget", user_id=p["id"]) for p in team],
            *[call("expenses.get_expenses", employee_id=p["id"], quarter="Q3") for p in team],
        )
    team = t.results("expenses.get_team_members")[0].items
    budgets = {o.arguments["user_id"]: o.value for o in t.results("expenses.get_custom_budget")}
    claims = {o.arguments["employee_id"]: o.items for o in t.results("expenses.get_expenses")}
    rows = []
    for person in team:
        budget = budgets[person["id"]]
        limit = float(budget["travel_budget"]) if budget else data.STANDARD_TRAVEL_BUDGET
        spent = _counted(claims[person["id"]], "travel")
        if spent > Decimal(str(limit)):
            rows.append({"id": person["id"], "name": person["name"], "spent": float(spent), "budget": limit})
    return Answer(audit_answer(rows))


def audit_ptc(t: Transcript) -> Step:
    if t.round == 0:
        return calls(call("execute_program", code=AUDIT_PROGRAM))
    return Answer(audit_answer(_audit_rows(t)))


def audit_check(answer: str) -> bool:
    truth = data.over_budget_engineers()
    engineers = [p["id"] for p in data.team_members("engineering")]
    numbers = _numbers(answer)
    return _mentions(answer, [r["id"] for r in truth], engineers) and all(_cents(r["spent"]) in numbers for r in truth)


# -- 2. fan-out then aggregate: one engineer's spend per category over the year -------------------------------

CATEGORY_EMPLOYEE = "E4"
CATEGORY_PROMPT = (
    "What did Dmitri Volkov (employee E4) spend per expense category across all four quarters of the fiscal "
    "year? Count approved and pending claims; rejected ones do not count. Give each category's total in USD."
)
CATEGORY_PROGRAM = """\
import json
quarters = await asyncio.gather(*[expenses.get_expenses(employee_id="E4", quarter=q) for q in ("Q1", "Q2", "Q3", "Q4")])
totals = {}
for records in quarters:
    for r in records:
        if r["status"] != "rejected":
            totals[r["category"]] = round(totals.get(r["category"], 0) + r["amount"], 2)
print(json.dumps(dict(sorted(totals.items()))))
"""


def category_answer(totals: dict[str, Any]) -> str:
    lines = [f"Dmitri Volkov (E4) spent, per category (approved and pending, {data.YEAR}):"]
    lines += [f"- {category}: {float(total):,.2f} USD" for category, total in sorted(totals.items())]
    return "\n".join(lines)


def category_traditional(t: Transcript) -> Step:
    if t.round == 0:
        return calls(*[call("expenses.get_expenses", employee_id=CATEGORY_EMPLOYEE, quarter=q) for q in QUARTERS])
    records = [r for o in t.results("expenses.get_expenses") for r in o.items]
    categories = sorted({r["category"] for r in records if r["status"] != "rejected"})
    return Answer(category_answer({c: _counted(records, c) for c in categories}))


def category_ptc(t: Transcript) -> Step:
    if t.round == 0:
        return calls(call("execute_program", code=CATEGORY_PROGRAM))
    return Answer(category_answer(_program_json(t)))


def category_truth() -> dict[str, Decimal]:
    records = [r for r in data.dataset().expenses if r["employee_id"] == CATEGORY_EMPLOYEE]
    categories = {r["category"] for r in records if r["status"] != "rejected"}
    return {c: _counted(records, c) for c in categories}


def category_check(answer: str) -> bool:
    lowered = answer.lower()
    numbers = _numbers(answer)
    return all(c in lowered and _cents(total) in numbers for c, total in category_truth().items())


# -- 3. lookups joined: who has a custom budget, and how much of it they used in Q3 --------------------------

CUSTOM_PROMPT = (
    "Which engineers (department 'engineering') have a custom travel budget, and how much of it did each use "
    "in Q3? Count approved and pending travel expenses; rejected ones do not count. For each, give id, name, "
    "budget, amount spent and the percentage of the budget used."
)
CUSTOM_PROGRAM = """\
import json
team = await expenses.get_team_members(department="engineering")
budgets = await asyncio.gather(*[expenses.get_custom_budget(user_id=p["id"]) for p in team])
rows = []
for person, budget in zip(team, budgets):
    if budget:
        records = await expenses.get_expenses(employee_id=person["id"], quarter="Q3")
        spent = round(sum(r["amount"] for r in records if r["category"] == "travel" and r["status"] != "rejected"), 2)
        rows.append({"id": person["id"], "name": person["name"], "budget": budget["travel_budget"], "spent": spent})
print(json.dumps(rows))
"""


def custom_answer(rows: list[dict[str, Any]]) -> str:
    lines = [f"{len(rows)} engineers have a custom travel budget; their Q3 travel spend:"]
    for row in rows:
        used = Decimal(str(row["spent"])) / Decimal(str(row["budget"])) * 100
        lines.append(
            f"- {row['name']} ({row['id']}): budget {row['budget']:,.2f} USD, spent {row['spent']:,.2f} USD "
            f"({used:.1f}% used)"
        )
    return "\n".join(lines)


def custom_traditional(t: Transcript) -> Step:
    if t.round == 0:
        return calls(call("expenses.get_team_members", department="engineering"))
    if t.round == 1:
        return calls(*[call("expenses.get_custom_budget", user_id=p["id"]) for p in t.last[0].items])
    budgets = {o.arguments["user_id"]: o.value for o in t.results("expenses.get_custom_budget") if o.value}
    if t.round == 2:
        return calls(*[call("expenses.get_expenses", employee_id=uid, quarter="Q3") for uid in budgets])
    team = {p["id"]: p for p in t.results("expenses.get_team_members")[0].items}
    claims = {o.arguments["employee_id"]: o.items for o in t.results("expenses.get_expenses")}
    rows = [
        {
            "id": uid,
            "name": team[uid]["name"],
            "budget": float(budget["travel_budget"]),
            "spent": float(_counted(claims[uid], "travel")),
        }
        for uid, budget in budgets.items()
    ]
    return Answer(custom_answer(rows))


def custom_ptc(t: Transcript) -> Step:
    if t.round == 0:
        return calls(call("execute_program", code=CUSTOM_PROGRAM))
    return Answer(custom_answer(_program_json(t)))


def custom_check(answer: str) -> bool:
    engineers = [p["id"] for p in data.team_members("engineering")]
    wanted = [p for p in engineers if data.custom_budget(p) is not None]
    numbers = _numbers(answer)
    spent_ok = all(_cents(data.travel_spend(p, "Q3")) in numbers for p in wanted)
    budget_ok = all(_cents(data.custom_budget(p)["travel_budget"]) in numbers for p in wanted)  # type: ignore[index]
    return _mentions(answer, wanted, engineers) and spent_ok and budget_ok


# -- 4. a large result filtered to one row: the largest pending claim of the department ----------------------

LARGEST_PROMPT = (
    "What is the single largest pending expense claim of the engineering department (department "
    "'engineering') in the fiscal year, over all four quarters? Give the claim id, the employee, category, "
    "merchant and amount."
)
LARGEST_PROGRAM = """\
import json
team = await expenses.get_team_members(department="engineering")
pages = await asyncio.gather(
    *[expenses.get_expenses(employee_id=p["id"], quarter=q) for p in team for q in ("Q1", "Q2", "Q3", "Q4")]
)
names = {p["id"]: p["name"] for p in team}
pending = [r for records in pages for r in records if r["status"] == "pending"]
top = max(pending, key=lambda r: r["amount"])
print(json.dumps({**top, "name": names[top["employee_id"]]}))
"""


def largest_answer(row: dict[str, Any]) -> str:
    return (
        f"The largest pending claim is {row['id']}: {row['name']} ({row['employee_id']}), {row['category']} at "
        f"{row['merchant']}, {row['amount']:,.2f} USD on {row['date']}."
    )


def largest_traditional(t: Transcript) -> Step:
    if t.round == 0:
        return calls(call("expenses.get_team_members", department="engineering"))
    team = {p["id"]: p for p in t.results("expenses.get_team_members")[0].items}
    if t.round == 1:
        return calls(*[call("expenses.get_expenses", employee_id=p, quarter=q) for p in team for q in QUARTERS])
    pending = [r for o in t.results("expenses.get_expenses") for r in o.items if r["status"] == "pending"]
    top = max(pending, key=lambda r: Decimal(str(r["amount"])))
    return Answer(largest_answer({**top, "name": team[top["employee_id"]]["name"]}))


def largest_ptc(t: Transcript) -> Step:
    if t.round == 0:
        return calls(call("execute_program", code=LARGEST_PROGRAM))
    return Answer(largest_answer(_program_json(t)))


def largest_truth() -> dict[str, Any]:
    engineers = {p["id"] for p in data.team_members("engineering")}
    pending = [r for r in data.dataset().expenses if r["employee_id"] in engineers and r["status"] == "pending"]
    return max(pending, key=lambda r: Decimal(str(r["amount"])))


def largest_check(answer: str) -> bool:
    top = largest_truth()
    return top["id"] in answer and _cents(top["amount"]) in _numbers(answer)


# -- 5. one lookup: where PTC has nothing to save -------------------------------------------------------------

LOOKUP_PROMPT = "What is the custom quarterly travel budget of Gustav Berg (employee E7), and why does he have it?"
LOOKUP_PROGRAM = """\
import json
print(json.dumps(await expenses.get_custom_budget(user_id="E7")))
"""


def lookup_answer(budget: dict[str, Any] | None) -> str:
    if not budget:
        return "Gustav Berg (E7) has no custom budget; the standard one applies."
    amount = f"{budget['travel_budget']:,.2f} USD"
    return f"Gustav Berg (E7) has a custom quarterly travel budget of {amount}: {budget['reason']}."


def lookup_traditional(t: Transcript) -> Step:
    if t.round == 0:
        return calls(call("expenses.get_custom_budget", user_id="E7"))
    return Answer(lookup_answer(t.last[0].value))


def lookup_ptc(t: Transcript) -> Step:
    if t.round == 0:
        return calls(call("execute_program", code=LOOKUP_PROGRAM))
    return Answer(lookup_answer(_program_json(t)))


def lookup_check(answer: str) -> bool:
    budget = data.custom_budget("E7")
    return budget is not None and _cents(budget["travel_budget"]) in _numbers(answer)


TASKS = [
    Task(
        "expense_audit",
        data.AUDIT_TASK,
        audit_check,
        audit_traditional,
        audit_ptc,
        SERVERS,
        "17 lookups joined, arithmetic, a few rows out",
    ),
    Task(
        "category_totals",
        CATEGORY_PROMPT,
        category_check,
        category_traditional,
        category_ptc,
        SERVERS,
        "fan-out over 4 quarters, then aggregate",
    ),
    Task(
        "custom_budget_use",
        CUSTOM_PROMPT,
        custom_check,
        custom_traditional,
        custom_ptc,
        SERVERS,
        "dependent lookups in 3 rounds, joined",
    ),
    Task(
        "largest_pending_claim",
        LARGEST_PROMPT,
        largest_check,
        largest_traditional,
        largest_ptc,
        SERVERS,
        "large result (33 calls) filtered to one row",
    ),
    Task(
        "single_lookup",
        LOOKUP_PROMPT,
        lookup_check,
        lookup_traditional,
        lookup_ptc,
        SERVERS,
        "one tool call: nothing to save (baseline)",
    ),
]

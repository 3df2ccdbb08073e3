"""Deterministic data of the expense-audit example, and the ground truth of its audit task.

Everything derives from a seeded ``random.Random``: the same seed gives byte-identical data on every machine,
so tests and benchmarks can check a model's answer against ``over_budget_engineers``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, Literal

Quarter = Literal["Q1", "Q2", "Q3", "Q4"]

YEAR = 2024
SEED = 207
QUARTERS: tuple[Quarter, ...] = ("Q1", "Q2", "Q3", "Q4")
CATEGORIES = ("travel", "meals", "lodging", "software", "equipment", "training", "office")
STANDARD_TRAVEL_BUDGET = 5000.0
"""Quarterly travel budget (USD) of everyone without a custom budget."""
AUDIT_TASK = (
    "Which engineers (department 'engineering') exceeded their Q3 travel budget? Use the employee's custom "
    "travel budget if they have one, else the standard quarterly travel budget of 5000 USD. Count travel "
    "expenses that are approved or pending; rejected ones do not count. For each, give id, name, amount spent "
    "and budget."
)
"""The audit task as a prompt; ``over_budget_engineers()`` is its ground truth."""

_ENGINEERS = (
    ("E1", "Alice Chen", "Staff Engineer"),
    ("E2", "Bruno Diaz", "Senior Engineer"),
    ("E3", "Chiara Rossi", "Engineer"),
    ("E4", "Dmitri Volkov", "Senior Engineer"),
    ("E5", "Emeka Obi", "Principal Engineer"),
    ("E6", "Fatima Khan", "Engineer"),
    ("E7", "Gustav Berg", "Engineering Manager"),
    ("E8", "Hana Sato", "Senior Engineer"),
)
_OTHERS = (
    ("S1", "Ines Moreau", "sales", "Account Executive"),
    ("S2", "Jonas Weber", "sales", "Sales Engineer"),
    ("F1", "Kavya Iyer", "finance", "Controller"),
)
_CUSTOM_BUDGETS = {
    "E2": (8000.0, "Customer-facing role with frequent on-site visits"),
    "E5": (12000.0, "Leads the cross-region platform migration"),
    "E7": (3000.0, "Remote manager; travel approved case by case"),
}
_STATUSES = ("approved", "approved", "approved", "approved", "pending", "rejected")
_MERCHANTS = {
    "travel": ("Lufthansa", "United Airlines", "Deutsche Bahn", "Uber", "Hertz"),
    "meals": ("Cafe Central", "Team lunch", "Airport diner", "Client dinner"),
    "lodging": ("Marriott", "Hilton", "Airbnb", "Ibis"),
    "software": ("JetBrains", "GitHub", "Figma", "Datadog"),
    "equipment": ("Apple Store", "Dell", "Logitech", "Anker"),
    "training": ("O'Reilly", "Coursera", "PyCon", "KubeCon"),
    "office": ("Staples", "IKEA", "Amazon"),
}
_AMOUNT_RANGES = {
    "travel": (80, 1900),
    "meals": (12, 180),
    "lodging": (120, 950),
    "software": (10, 600),
    "equipment": (25, 2400),
    "training": (50, 1500),
    "office": (5, 300),
}
# Travel-heavy engineers make the audit interesting: some cross the standard budget, some only a custom one.
_MONTHS = tuple(range(1, 13))
_TRAVEL_MONTH_WEIGHTS = (2, 2, 2, 2, 2, 2, 4, 4, 4, 2, 2, 2)
_TRAVEL_WEIGHT = {"E1": 1, "E2": 6, "E3": 4, "E4": 2, "E5": 7, "E6": 1, "E7": 3, "E8": 5}


@dataclass(frozen=True)
class Dataset:
    """All records of the example company."""

    people: tuple[dict[str, Any], ...]
    expenses: tuple[dict[str, Any], ...]
    custom_budgets: dict[str, dict[str, Any]]


def _quarter_of(month: int) -> Quarter:
    return QUARTERS[(month - 1) // 3]


def _expenses_of(rng: random.Random, employee_id: str, first_id: int) -> list[dict[str, Any]]:
    count = rng.randint(20, 50)
    weight = _TRAVEL_WEIGHT.get(employee_id, 1)
    weights = [weight if category == "travel" else 1 for category in CATEGORIES]
    records = []
    for n in range(count):
        category = rng.choices(CATEGORIES, weights=weights)[0]
        # Conference season: travel clusters in Q3, which is what the audit task asks about.
        month = rng.choices(_MONTHS, weights=_TRAVEL_MONTH_WEIGHTS)[0] if category == "travel" else rng.randint(1, 12)
        day = rng.randint(1, 28)
        low, high = _AMOUNT_RANGES[category]
        amount = Decimal(rng.randint(low * 100, high * 100)) / 100
        records.append(
            {
                "id": f"X{first_id + n:05d}",
                "employee_id": employee_id,
                "date": f"{YEAR}-{month:02d}-{day:02d}",
                "quarter": _quarter_of(month),
                "category": category,
                "merchant": rng.choice(_MERCHANTS[category]),
                "amount": float(amount),
                "currency": "USD",
                "status": rng.choice(_STATUSES),
            }
        )
    records.sort(key=lambda record: (record["date"], record["id"]))
    return records


@cache
def dataset(seed: int = SEED) -> Dataset:
    """The example company's people, expenses and custom budgets (cached; treat as read-only)."""
    rng = random.Random(seed)
    people: list[dict[str, Any]] = [
        {"id": eid, "name": name, "department": "engineering", "title": title, "team": "engineering"}
        for eid, name, title in _ENGINEERS
    ]
    people += [
        {"id": pid, "name": name, "department": department, "title": title, "team": department}
        for pid, name, department, title in _OTHERS
    ]
    expenses: list[dict[str, Any]] = []
    for person in people:
        expenses += _expenses_of(rng, person["id"], first_id=len(expenses) + 1)
    custom = {
        user_id: {"user_id": user_id, "travel_budget": budget, "reason": reason}
        for user_id, (budget, reason) in _CUSTOM_BUDGETS.items()
    }
    return Dataset(people=tuple(people), expenses=tuple(expenses), custom_budgets=custom)


def team_members(department: str, seed: int = SEED) -> list[dict[str, Any]]:
    """Everyone in ``department`` (case-insensitive), in id order."""
    wanted = department.strip().lower()
    return [dict(person) for person in dataset(seed).people if person["department"] == wanted]


def expenses_of(employee_id: str, quarter: str, seed: int = SEED) -> list[dict[str, Any]]:
    """One employee's expense records of one quarter, in date order."""
    return [
        dict(record)
        for record in dataset(seed).expenses
        if record["employee_id"] == employee_id and record["quarter"] == quarter.upper()
    ]


def custom_budget(user_id: str, seed: int = SEED) -> dict[str, Any] | None:
    """The custom travel budget of ``user_id``, or ``None`` when the standard budget applies."""
    budget = dataset(seed).custom_budgets.get(user_id)
    return dict(budget) if budget is not None else None


def travel_spend(employee_id: str, quarter: str, seed: int = SEED) -> float:
    """Approved and pending travel spend of one employee in one quarter (rejected claims do not count)."""
    total = sum(
        Decimal(str(record["amount"]))
        for record in expenses_of(employee_id, quarter, seed)
        if record["category"] == "travel" and record["status"] != "rejected"
    )
    return float(total)


def over_budget_engineers(quarter: str = "Q3", seed: int = SEED) -> list[dict[str, Any]]:
    """Ground truth of the audit task: engineers whose travel spend exceeded their budget in ``quarter``.

    The budget is the custom one when the employee has one, else ``STANDARD_TRAVEL_BUDGET``; spend counts
    approved and pending travel records, not rejected ones. Rows are in employee-id order:
    ``{"id", "name", "spent", "budget", "over_by"}``.
    """
    rows = []
    for person in team_members("engineering", seed):
        custom = custom_budget(person["id"], seed)
        budget = custom["travel_budget"] if custom is not None else STANDARD_TRAVEL_BUDGET
        spent = travel_spend(person["id"], quarter, seed)
        if spent > budget:
            over = float(Decimal(str(spent)) - Decimal(str(budget)))
            rows.append({"id": person["id"], "name": person["name"], "spent": spent, "budget": budget, "over_by": over})
    return rows

"""The example company's data and the ground truth of the audit task."""

from __future__ import annotations

from collections import Counter

from ptc_mcp.examples import expenses_data as data


def test_the_data_is_the_same_every_time_it_is_generated() -> None:
    assert data.dataset.__wrapped__(data.SEED) == data.dataset.__wrapped__(data.SEED)


def test_engineering_has_eight_engineers_with_20_to_50_expenses_each_across_all_quarters() -> None:
    engineers = data.team_members("engineering")
    counts = Counter(record["employee_id"] for record in data.dataset().expenses)
    assert len(engineers) == 8
    assert all(20 <= counts[person["id"]] <= 50 for person in engineers)
    assert {record["quarter"] for record in data.dataset().expenses} == set(data.QUARTERS)
    assert {record["category"] for record in data.dataset().expenses} >= {"travel", "meals", "lodging", "software"}


def test_dates_fall_in_the_quarter_they_are_filed_under() -> None:
    for record in data.dataset().expenses:
        month = int(record["date"][5:7])
        assert record["quarter"] == f"Q{(month - 1) // 3 + 1}"
        assert record["date"].startswith(str(data.YEAR))


def test_the_ground_truth_uses_custom_budgets_and_ignores_rejected_claims() -> None:
    answer = data.over_budget_engineers("Q3")
    assert [row["id"] for row in answer] == ["E3", "E4", "E7"]
    # E7's custom budget is below the standard one; E2 and E5 spend more than the standard budget but less
    # than their custom ones, so a solver that ignores custom budgets gets this wrong.
    assert data.travel_spend("E7", "Q3") < data.STANDARD_TRAVEL_BUDGET
    for employee_id in ("E2", "E5"):
        budget = data.custom_budget(employee_id)
        assert budget is not None
        assert data.STANDARD_TRAVEL_BUDGET < data.travel_spend(employee_id, "Q3") <= budget["travel_budget"]


def test_a_rejected_claim_does_not_count_towards_spend() -> None:
    rejected = [
        record
        for record in data.expenses_of("E8", "Q3")
        if record["category"] == "travel" and record["status"] == "rejected"
    ]
    everything = sum(record["amount"] for record in data.expenses_of("E8", "Q3") if record["category"] == "travel")
    assert rejected
    assert data.travel_spend("E8", "Q3") < everything

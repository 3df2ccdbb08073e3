# The expense audit as one program: which engineers exceeded their Q3 travel budget?
# `ptc-mcp demo` sends this file to execute_program; only what it prints and its last value reach the model.
team = await expenses.get_team_members(department="engineering")
custom = await asyncio.gather(*[expenses.get_custom_budget(user_id=person["id"]) for person in team])

over_budget = []
for person, budget in zip(team, custom):
    limit = budget["travel_budget"] if budget else 5000.0
    claims = await expenses.get_expenses(employee_id=person["id"], quarter="Q3")
    spent = sum(c["amount"] for c in claims if c["category"] == "travel" and c["status"] != "rejected")
    if spent > limit:
        over_budget.append({"id": person["id"], "name": person["name"], "spent": round(spent, 2), "budget": limit})

for row in over_budget:
    print(f"{row['name']} ({row['id']}) spent {row['spent']:,.2f} USD of a {row['budget']:,.2f} USD budget")
over_budget

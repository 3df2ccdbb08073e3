"""An example MCP server for an expense audit, with deterministic data.

Tools: ``get_team_members(department)``, ``get_expenses(employee_id, quarter)``, ``get_custom_budget(user_id)``.
Every tool has an output schema, so clients get ``structuredContent`` (the SDK wraps non-object results as
``{"result": ...}``). The audit task and its ground truth live in ``ptc_mcp.examples.expenses_data``.

Run it (``ptc-mcp example expenses`` is the same, from any client: see the README)::

    python -m ptc_mcp.examples.expenses                                # stdio
    python -m ptc_mcp.examples.expenses --transport http --port 8765   # streamable HTTP on 127.0.0.1, path /mcp
    python -m ptc_mcp.examples.expenses --transport sse --port 0       # legacy SSE on 127.0.0.1, path /sse

With ``--port 0`` the system picks a free port. HTTP transports print one line to stderr when they listen:
``ptc-mcp example listening on <url>``. ``--latency-ms N`` makes every call take N ms longer (benchmarks).
"""

from __future__ import annotations

import argparse
import sys
from typing import Literal

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from ptc_mcp.examples import expenses_data as data
from ptc_mcp.listening import listening_socket

__all__ = ["CustomBudget", "Employee", "Expense", "build_server", "main"]

READY_PREFIX = "ptc-mcp example listening on "


class Employee(BaseModel):
    """A person in the company directory."""

    id: str
    name: str
    department: str
    title: str
    team: str


class Expense(BaseModel):
    """One expense claim."""

    id: str
    employee_id: str
    date: str
    quarter: Literal["Q1", "Q2", "Q3", "Q4"]
    category: str
    merchant: str
    amount: float
    currency: str
    status: Literal["approved", "pending", "rejected"]


class CustomBudget(BaseModel):
    """A travel budget that replaces the standard one for one employee."""

    user_id: str
    travel_budget: float
    reason: str


def build_server(latency_ms: float = 0.0, seed: int = data.SEED) -> MCPServer:
    """The expense server; ``latency_ms`` delays every call (to simulate a remote system)."""
    server = MCPServer(
        "expenses",
        instructions=(
            "Company expense system for fiscal year "
            f"{data.YEAR}. Standard quarterly travel budget: {data.STANDARD_TRAVEL_BUDGET:.0f} USD "
            "unless get_custom_budget returns one."
        ),
        log_level="WARNING",
    )
    known_ids = {person["id"] for person in data.dataset(seed).people}

    async def pause() -> None:
        if latency_ms > 0:
            await anyio.sleep(latency_ms / 1000)

    @server.tool()
    async def get_team_members(department: str) -> list[Employee]:
        """List the employees of a department (for example "engineering"), in id order."""
        await pause()
        return [Employee(**person) for person in data.team_members(department, seed)]

    @server.tool()
    async def get_expenses(employee_id: str, quarter: Literal["Q1", "Q2", "Q3", "Q4"]) -> list[Expense]:
        """List one employee's expense claims in one quarter of the fiscal year, in date order.

        Amounts are in USD. ``status`` is approved, pending or rejected.
        """
        await pause()
        if employee_id not in known_ids:
            raise ToolError(f"unknown employee id {employee_id!r}")
        return [Expense(**record) for record in data.expenses_of(employee_id, quarter, seed)]

    @server.tool()
    async def get_custom_budget(user_id: str) -> CustomBudget | None:
        """The custom quarterly travel budget of an employee, or null when the standard budget applies."""
        await pause()
        if user_id not in known_ids:
            raise ToolError(f"unknown employee id {user_id!r}")
        budget = data.custom_budget(user_id, seed)
        return CustomBudget(**budget) if budget is not None else None

    return server


async def _serve_http(server: MCPServer, transport: Literal["http", "sse"], port: int) -> None:
    sock = listening_socket("127.0.0.1", port)
    bound = sock.getsockname()[1]
    if transport == "http":
        app = server.streamable_http_app(host="127.0.0.1")
        url = f"http://127.0.0.1:{bound}/mcp"
    else:
        app = server.sse_app(host="127.0.0.1")
        url = f"http://127.0.0.1:{bound}/sse"
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    # The socket already listens, so connections made after this line queue until uvicorn accepts them.
    sys.stderr.write(f"{READY_PREFIX}{url}\n")
    sys.stderr.flush()
    await uvicorn.Server(config).serve(sockets=[sock])


def main(argv: list[str] | None = None, prog: str = "python -m ptc_mcp.examples.expenses") -> None:
    """Command line entry point (also ``ptc-mcp example expenses``)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--transport", choices=["stdio", "http", "streamable-http", "sse"], default="stdio")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 for HTTP transports (0: any)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated latency added to every call")
    args = parser.parse_args(argv)
    server = build_server(latency_ms=args.latency_ms)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        transport: Literal["http", "sse"] = "sse" if args.transport == "sse" else "http"
        anyio.run(_serve_http, server, transport, args.port)


if __name__ == "__main__":
    main()

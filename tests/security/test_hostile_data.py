"""SECURITY.md principle 9, "What comes back is hostile too": hostile data never crashes, floods, freezes or mutes
the host.

``ptc-mcp serve`` runs as a real subprocess over stdio and over streamable HTTP, on the isolating backends
(``process`` with bubblewrap; ``docker`` with a few cases), with a downstream server of the attacker's choosing
(``hostile_server.py``) and an audit file. A program then sends everything it controls: lone surrogates and
invalid UTF-8 in every field, floods through every field of the result, giant and malformed discovery calls,
forged protocol messages. For each: the run gets a typed result within the output budget, the server keeps
answering other requests with bounded latency (measured while the attack runs), the shared downstream connection
keeps working for another client, and the audit trail keeps a line for every run and every call attempt.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, get_args

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from ptc_mcp.errors import ErrorType
from ptc_mcp.sandboxes.process.isolation import bubblewrap_status
from tests.mcp_calls import execute, structured
from tests.security.conftest import LATENCIES, Secured
from tests.test_server_transports import serving

pytestmark = pytest.mark.anyio

BUDGET = 4096
MARKERS = 600
"""Truncation markers may add this much to the budget (a few per result, each well under 100 bytes)."""
MAX_CALLS = 20
LATENCY_BOUND_S = 5.0
"""Slowest answer to another request while an attack runs (generous for a loaded 2-core machine; the freeze this
guards against was ~20 s)."""
CONTRACT = set(get_args(ErrorType))
HOSTILE = {"command": sys.executable, "args": [str(Path(__file__).with_name("hostile_server.py"))], "timeout_s": 30}
HANGING = {**HOSTILE, "timeout_s": 2}
"""The same server again, for the tools that never answer (``hang``, ``wire_answer``): a short timeout there only
(a flood or a call in flight during an attack may take longer than 2 s on a loaded machine)."""
SERVERS = {"hostile": HOSTILE, "hanging": HANGING}

FORGE = """
import gc
runtime = next(o for o in gc.get_objects() if type(o).__name__ == "Runtime")
"""
"""Reach the runtime's protocol channel from inside the program, as an attacker would."""


@dataclass(frozen=True)
class Attack:
    name: str
    code: str
    error: str | None
    """The error type the run must end with (``None``: it succeeds)."""
    check: Callable[[dict[str, Any]], bool] = lambda result: True
    docker: bool = False
    """Also run on docker (kept to a few cases: each container costs seconds)."""


def _returns(expected: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda result: result["result"] == expected


ATTACKS = [
    # -- text the host cannot encode ---------------------------------------------------------------------------
    Attack(
        "surrogate-in-exception-message",
        'raise ValueError("\\ud800")',
        "program_error",
        lambda r: r["error"]["message"] == "\ufffd",
        docker=True,
    ),
    Attack("surrogate-last-expression", '"a\\ud800b"', None, _returns("a\ufffdb"), docker=True),
    Attack(
        "surrogate-in-stdout-and-stderr",
        'import sys\nprint("\\udfff out")\nsys.stderr.write("\\ud800 err\\n")',
        None,
        lambda r: "\ufffd out" in r["stdout"] and "\ufffd err" in r["stderr"],
    ),
    Attack(  # Python refuses such a class name itself; the runtime forges one below ("forged-done-...")
        "surrogate-in-exception-class-name",
        'raise type("Bad\\ud800", (Exception,), {})("m")',
        "program_error",
    ),
    Attack(
        "non-utf8-file-name-listed",
        "import os\nopen(b'/tmp/name-\\xff\\xfe', 'w').close()\n"
        "[n for n in os.listdir('/tmp') if n.startswith('name-')]",
        None,
        _returns(["name-\ufffd\ufffd"]),
        docker=True,
    ),
    Attack(
        "surrogate-in-a-nested-call-argument",
        'await hostile.echo(text="\\ud800", **{"key\\udfff": 1})',
        None,
        _returns({"text": "\ufffd", "key\ufffd": 1}),
        docker=True,
    ),
    Attack(
        "tool-result-decoding-to-lone-surrogates",
        "await hostile.surrogate_text()",
        None,
        _returns({"lone \ufffd": ["\ufffd", "pair \U0001f600"]}),
    ),
    Attack(
        "tool-error-text-decoding-to-lone-surrogates",
        "try:\n    await hostile.surrogate_error()\nexcept ToolError as exc:\n    result = exc.message\nresult",
        None,
        _returns('"\\udc80 failed"'),  # an error's text is shown as sent, never JSON-decoded
    ),
    Attack(
        "downstream-writes-a-lone-surrogate-on-the-wire",
        "await hostile.wire_surrogate()",
        None,
        _returns("after \ufffd"),
    ),
    Attack(
        "downstream-answers-with-a-lone-surrogate-on-the-wire",
        "try:\n    await hanging.wire_answer()\nexcept ToolError as exc:\n    kind = exc.error_type\nkind",
        None,
        _returns("timeout"),  # the SDK drops a line it cannot parse: the call times out, the connection stays
    ),
    Attack("surrogate-in-discovery", 'tools.search("\\ud800")\ntools.search("\\udfff budget", limit=3)', None),
    # -- floods through every field ----------------------------------------------------------------------------
    Attack("flood-exception-message", 'raise ValueError("m" * 5_000_000)', "program_error", docker=True),
    Attack("flood-exception-class-name", 'raise type("E" * 5_000_000, (Exception,), {})()', "program_error"),
    Attack("flood-result-repr", 'class R:\n    def __repr__(self):\n        return "r" * 5_000_000\nR()', None),
    Attack("flood-result-value", '["v" * 1000] * 5000', None),
    Attack("flood-stderr", 'import sys\nsys.stderr.write("e" * 5_000_000)', "output_limit"),
    Attack("flood-tool-result", "await hostile.flood(size=3_000_000)", None),
    Attack(
        "flood-traceback",
        "def deep(n):\n    return deep(n - 1) if n else 1 / 0\ndeep(900)",
        "program_error",
    ),
    # -- giant and malformed discovery -------------------------------------------------------------------------
    Attack(
        "giant-search-query",
        'try:\n    tools.search("q" * 56_000_000)\nexcept TypeError as exc:\n    result = "refused"\nresult',
        None,
        _returns("refused"),
        docker=True,
    ),
    Attack(
        "malformed-discovery-arguments",
        "outcomes = []\n"
        "for call in (lambda: tools.search('x', limit=float('inf')), lambda: tools.search('x', limit=-1),\n"
        "             lambda: tools.search('x', limit='5'), lambda: tools.search('x', limit=True),\n"
        "             lambda: tools.describe('d' * 10_000_000)):\n"
        "    try:\n        call()\n        outcomes.append('answered')\n"
        "    except Exception as exc:\n        outcomes.append(type(exc).__name__)\n"
        "outcomes",
        None,
        _returns(["TypeError"] * 5),
    ),
    # -- forged protocol messages ------------------------------------------------------------------------------
    Attack(
        "forged-discovery-calls",
        FORGE + 'runtime.protocol.send({"type": "call", "id": runtime.run_id, "call": 10**6, "tool": "@search",'
        ' "args": {"query": "x", "limit": float("inf")}})\n'
        'runtime.protocol.send({"type": "call", "id": runtime.run_id, "call": 10**6 + 1, "tool": "@search",'
        ' "args": {"query": "q" * 56_000_000}})\n'
        '"sent"',
        None,
        _returns("sent"),
    ),
    Attack(
        "forged-done-with-floods-and-a-host-status",
        FORGE + 'runtime.protocol.send({"type": "done", "id": runtime.run_id, "ok": False, "tool_calls": 10**9,'
        ' "result_repr": "r" * 3_000_000, "error": {"type": "timeout", "exc_type": "E" * 3_000_000,'
        ' "message": "m\\ud800" * 1_000_000, "traceback": "t" * 3_000_000}})',
        "program_error",  # the host never takes `timeout` from the program
        lambda r: r["tool_calls"] == 0,
        docker=True,
    ),
    Attack(
        "forged-done-claiming-a-tool-denial-with-a-surrogate-class-name",
        FORGE + 'runtime.protocol.send({"type": "done", "id": runtime.run_id, "ok": False,'
        ' "error": {"type": "tool_denied", "exc_type": "Bad\\udfff", "message": "no call was denied"}})',
        "program_error",
        lambda r: r["error"]["exc_type"] == "Bad\ufffd",
    ),
    # -- every call outcome, audited ---------------------------------------------------------------------------
    Attack(
        "call-outcomes",
        "seen = []\n"
        "for call in (lambda: hostile.echo(a=1), lambda: call_tool('hostile.denied', {}),\n"
        "             lambda: hostile.typed(n='x'), lambda: hanging.hang(), lambda: call_tool('hostile.nope', {})):\n"
        "    try:\n        await call()\n        seen.append('ok')\n"
        "    except ToolError as exc:\n        seen.append(exc.error_type)\n"
        "    except TypeError:\n        seen.append('TypeError')\n"
        "seen",
        None,
        _returns(["ok", "tool_denied", "TypeError", "timeout", "tool_error"]),
    ),
    Attack(
        "calls-past-the-budget",
        "for _ in range(100_000):\n    try:\n        await hostile.echo()\n    except ToolError:\n        pass",
        "tool_call_limit",
        lambda r: r["tool_calls"] <= 3 * MAX_CALLS,
    ),
]


def write_config(folder: Path, backend: str) -> Path:
    sandbox: dict[str, Any] = {"kind": backend, "warm_pool": 0}
    if backend == "docker":
        from ptc_mcp.sandboxes.docker.image import build_local_image

        sandbox["docker"] = {"image": build_local_image(), "pull": "never"}
    document = {
        "mcpServers": SERVERS,
        "sandbox": sandbox,
        "limits": {"max_output_bytes": BUDGET, "max_tool_calls": MAX_CALLS, "timeout_s": 30},
        "tools": {"deny": ["hostile.denied"]},
        "audit": {"file": str(folder / "audit.jsonl"), "include_arguments": True},
    }
    path = folder / "config.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@asynccontextmanager
async def two_clients(config: Path, transport: str) -> AsyncIterator[tuple[Client, Client]]:
    """The attacker's client and another one: over HTTP another connection; over stdio (one client per server by
    nature) the same connection, whose other requests must keep being answered."""
    if transport == "stdio":
        params = StdioServerParameters(command=sys.executable, args=["-m", "ptc_mcp", "serve", "--config", str(config)])
        async with Client(params, mode="legacy") as client:
            yield client, client
        return
    async with serving(config, "http") as base:
        url = f"{base}/mcp"
        async with (
            Client(streamable_http_client(url), mode="legacy") as attacker,
            Client(streamable_http_client(url), mode="legacy") as other,
        ):
            yield attacker, other


async def ping(client: Client, latencies: list[float], stop: anyio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        with anyio.fail_after(60):
            await client.list_tools()
        latencies.append(time.perf_counter() - started)
        await anyio.sleep(0.05)


def returned_bytes(result: dict[str, Any]) -> int:
    """Bytes of every field a run returns from the program (the output budget's scope)."""
    error = result.get("error") or {}
    fields = [result["stdout"], result["stderr"], result.get("result_repr"), error.get("exc_type")]
    fields += [error.get("message"), error.get("traceback")]
    size = sum(len(text.encode()) for text in fields if text)
    if result.get("result") is not None:
        size += len(json.dumps(result["result"], ensure_ascii=False).encode())
    return size


CASES = [
    pytest.param("process", "stdio", marks=pytest.mark.bubblewrap),
    pytest.param("process", "http", marks=pytest.mark.bubblewrap),
    pytest.param("docker", "stdio", marks=pytest.mark.docker),
    pytest.param("docker", "http", marks=pytest.mark.docker),
]


@pytest.mark.parametrize(("backend", "transport"), CASES)
async def test_hostile_data_gets_typed_results_and_never_crashes_floods_freezes_or_mutes_the_server(
    backend: str, transport: str, tmp_path: Path
) -> None:
    reason = await anyio.to_thread.run_sync(_unavailable, backend)
    if reason:
        pytest.skip(reason)
    attacks = [attack for attack in ATTACKS if backend == "process" or attack.docker]
    config = write_config(tmp_path, backend)
    failures: list[str] = []
    latencies = LATENCIES.setdefault(f"{transport}/{backend}", [])
    returned: list[dict[str, Any]] = []
    async with two_clients(config, transport) as (attacker, other):
        for attack in attacks:
            stop = anyio.Event()
            shared: dict[str, Any] = {}
            async with anyio.create_task_group() as group:
                group.start_soon(ping, other, latencies, stop)
                if other is not attacker:  # another client's call on the shared downstream connection, in flight
                    group.start_soon(_call_in_flight, other, shared)
                started = time.perf_counter()
                result = structured(await execute(attacker, attack.code))
                elapsed = time.perf_counter() - started
                stop.set()
            returned.append(result)
            problems = _problems(attack, result, elapsed)
            if "call" in shared:
                returned.append(shared["call"])
                if shared["call"]["result"] != {"delay_s": 0.3}:
                    problems.append(f"another client's downstream call failed: {shared['call']}")
            after = structured(await execute(other, "await hostile.echo(still='serving')"))
            returned.append(after)
            if after["result"] != {"still": "serving"}:
                problems.append(f"the server stopped serving: {after}")
            failures += [f"{attack.name}: {problem}" for problem in problems]
        worst = max(latencies)
    assert failures == [], "\n".join(failures)
    assert worst < LATENCY_BOUND_S, f"another request waited {worst:.2f} s during an attack"
    _check_audit(tmp_path / "audit.jsonl", returned, every_outcome=backend == "process")


async def _call_in_flight(client: Client, into: dict[str, Any]) -> None:
    into["call"] = structured(await execute(client, "await hostile.slow_echo(delay_s=0.3)"))


def _problems(attack: Attack, result: dict[str, Any], elapsed: float) -> list[str]:
    problems = []
    error = result["error"]
    error_type = error["type"] if error else None
    if error_type != attack.error:
        problems.append(f"error type {error_type!r}, expected {attack.error!r}: {str(result)[:400]}")
    if error_type is not None and error_type not in CONTRACT:
        problems.append(f"{error_type!r} is not in the error contract")
    size = returned_bytes(result)
    if size > BUDGET + MARKERS:
        problems.append(f"returned {size} bytes, over the budget of {BUDGET}")
    if elapsed > 25:
        problems.append(f"took {elapsed:.1f} s")
    if not attack.check(result):
        problems.append(f"unexpected result: {str(result)[:400]}")
    return problems


def _check_audit(path: Path, returned: list[dict[str, Any]], *, every_outcome: bool) -> None:
    """Every line is valid UTF-8 JSON; one run line per run with the status the client got; every call attempt
    has its line with its outcome (``every_outcome``: all six outcomes occurred)."""
    lines = [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]
    runs = [line for line in lines if line["event"] == "run"]
    calls = [line for line in lines if line["event"] == "call"]
    assert Counter(line["error_type"] for line in runs) == Counter(
        (result["error"] or {}).get("type") for result in returned
    )
    assert all(line["output_bytes"] <= BUDGET for line in runs)
    attempts = sum(line.get("call_attempts", 0) for line in runs)
    assert len(calls) == attempts, f"{len(calls)} call lines for {attempts} attempts"
    outcomes = Counter(line["outcome"] for line in calls)
    expected = {"ok", "tool_error", "tool_denied", "tool_call_limit", "invalid_arguments", "timeout"}
    assert expected <= set(outcomes) or not every_outcome, outcomes
    assert any("\ufffd" in json.dumps(line.get("arguments"), ensure_ascii=False) for line in calls)


def _unavailable(backend: str) -> str | None:
    """Why ``backend`` cannot isolate programs here (the server would refuse to start), else ``None``."""
    if backend == "process":
        usable, why = bubblewrap_status()
        return None if usable else f"bubblewrap is not usable here: {why}"
    try:
        import docker

        docker.from_env(timeout=10).ping()
    except Exception as exc:  # no SDK, no engine, no permission: skip with the reason
        return f"docker is not usable here: {exc}"
    return None


def test_the_hostile_server_is_a_real_stdio_mcp_server() -> None:
    """The attacker's downstream server starts on its own (so a failure above is never its start-up)."""
    process = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("hostile_server.py"))],
        input=b"",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-2000:]


@pytest.mark.servers(SERVERS)
@pytest.mark.limits(max_output_bytes=BUDGET, max_tool_calls=MAX_CALLS)
async def test_the_short_list_of_attacks_gets_typed_results_on_every_backend_in_process(secured: Secured) -> None:
    """The same attacks through the in-memory MCP client, on every backend of the registry: ``agentcore`` too,
    whose runtime messages travel in steps (through its emulator)."""
    failures: list[str] = []
    for listed in ATTACKS:
        if not listed.docker:
            continue
        attack = listed
        if secured.kind == "agentcore" and attack.name == "forged-done-with-floods-and-a-host-status":
            # A step's answer carries every message of the step at once: megabytes of it break the step itself
            # (docs/security.md, "The agentcore backend"); still a typed result within the budget.
            attack = replace(attack, error="sandbox_failure")
        started = time.perf_counter()
        result = await secured.run(attack.code)
        elapsed = time.perf_counter() - started
        failures += [f"{attack.name}: {problem}" for problem in _problems(attack, result, elapsed)]
    assert failures == [], "\n".join(failures)
    await secured.assert_serving()

"""``ptc-mcp session-map create-table|bench``: set up the DynamoDB table; measure a store's lease latency."""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from typing import Any

import anyio

from ptc_mcp.errors import PtcError

__all__ = ["add_session_map_parser", "measure_leases"]


def add_session_map_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``session-map`` command to the ``ptc-mcp`` parser."""
    command = subparsers.add_parser("session-map", help="the shared session map of a fleet (remote.session_map)")
    actions = command.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create-table", help="create the DynamoDB table (on-demand capacity, TTL on expires_at); safe to repeat"
    )
    create.add_argument("--table", required=True)
    create.add_argument("--region", help="AWS region (default: boto3's)")
    create.add_argument("--endpoint-url", help="DynamoDB endpoint (default: boto3's; the emulator in tests)")
    create.set_defaults(func=cmd_create_table)
    bench = actions.add_parser("bench", help="lease latency of the store a config names: take, renew, release")
    bench.add_argument("--config", required=True, help="a config file with remote.session_map")
    bench.add_argument("--runs", type=int, default=200)
    bench.set_defaults(func=cmd_bench)


def cmd_create_table(args: argparse.Namespace) -> int:
    from ptc_mcp.remote.stores.dynamodb_map import create_session_table, dynamodb_client

    try:
        client = dynamodb_client(region=args.region, endpoint_url=args.endpoint_url)
        result = anyio.run(create_session_table, client, args.table)
    except PtcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ptc_mcp.config import load_config
    from ptc_mcp.remote.shared_sessions import open_session_map

    try:
        config = load_config(args.config)
        if config.remote.session_map.kind == "local":
            print("error: remote.session_map.kind is 'local': name a shared store", file=sys.stderr)
            return 2
        sessions = open_session_map(config.remote.session_map, idle_s=config.sandbox.session_idle_s)
        result = anyio.run(measure_leases, sessions, args.runs)
    except PtcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"store": config.remote.session_map.kind, **result}))
    return 0


async def measure_leases(sessions: Any, runs: int) -> dict[str, float]:
    """Median and p95 milliseconds of one run's map traffic: acquire, one renewal, release (one session)."""
    handle = "ptc_bench_" + secrets.token_urlsafe(12)
    holder = secrets.token_hex(8)
    await sessions.create(handle, None)
    samples: dict[str, list[float]] = {"acquire": [], "renew": [], "release": [], "run": []}
    try:
        for _ in range(runs):
            started = time.perf_counter()
            lease = await sessions.acquire(handle, holder, 30)
            taken = time.perf_counter()
            assert lease is not None, "the bench session is leased by someone else"
            await sessions.renew(handle, holder, lease.fence, 30)
            renewed = time.perf_counter()
            await sessions.release(handle, holder, lease.fence, {"backend": "bench"})
            done = time.perf_counter()
            samples["acquire"].append(taken - started)
            samples["renew"].append(renewed - taken)
            samples["release"].append(done - renewed)
            samples["run"].append(done - started - (renewed - taken))
    finally:
        await sessions.delete(handle)
        await sessions.aclose()
    result: dict[str, float] = {"runs": float(runs)}
    for name, values in samples.items():
        ordered = sorted(values)
        result[f"{name}_p50_ms"] = round(statistics.median(ordered) * 1000, 3)
        result[f"{name}_p95_ms"] = round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3)
    return result

"""``ptc-mcp emulate agentcore|dynamodb [--host H] [--port N]``: cli.py calls ``add_emulate_parser(commands)``."""

from __future__ import annotations

import argparse
import logging
import sys

import anyio

__all__ = ["add_emulate_parser"]


def add_emulate_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``emulate`` command (with the ``agentcore`` emulator) to the ``ptc-mcp`` parser."""
    emulate = subparsers.add_parser("emulate", help="serve a local emulator of a cloud service, for tests")
    services = emulate.add_subparsers(dest="service", required=True)
    agentcore = services.add_parser(
        "agentcore",
        help="Amazon Bedrock AgentCore Code Interpreter data plane (for boto3 endpoint_url)",
    )
    agentcore.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    agentcore.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 picks a free one)")
    agentcore.set_defaults(func=cmd_emulate_agentcore)
    dynamodb = services.add_parser("dynamodb", help="Amazon DynamoDB (the operations the session map uses)")
    dynamodb.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    dynamodb.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    dynamodb.set_defaults(func=cmd_emulate_dynamodb)


def cmd_emulate_agentcore(args: argparse.Namespace) -> int:
    from ptc_mcp.emulators.agentcore import serve_emulator

    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        anyio.run(serve_emulator, args.host, args.port)
    except ValueError as exc:
        logging.getLogger(__name__).error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_emulate_dynamodb(args: argparse.Namespace) -> int:
    from ptc_mcp.emulators.dynamodb import serve_dynamodb_emulator

    try:
        anyio.run(serve_dynamodb_emulator, args.host, args.port)
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 0
    return 0

"""The ``ptc-mcp`` command: serve, check, login, logout, demo, bench."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import anyio

from ptc_mcp import __version__
from ptc_mcp.config import Config, effective_limits, load_config, parse_config
from ptc_mcp.errors import ConfigError, SandboxUnavailableError

if TYPE_CHECKING:
    from ptc_mcp.app import DirectoryFactory

AUTH_TOKEN_ENV = "PTC_MCP_AUTH_TOKEN"
CONFIG_ENV = "PTC_MCP_CONFIG"
"""``serve``'s defaults come from these variables too (the container image is configured by env)."""


def _setup_logging(level: str) -> None:
    from ptc_mcp.app import READY_LOGGER

    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # `serve`'s one "ready" line shows at the default level (warning) too; `--log-level error` hides it.
    threshold = getattr(logging, level.upper())
    logging.getLogger(READY_LOGGER).setLevel(threshold if threshold >= logging.ERROR else min(threshold, logging.INFO))


def _load(path: str, exclude: list[str] | None = None) -> Config:
    try:
        if path.lstrip().startswith("{"):  # the document itself, e.g. PTC_MCP_CONFIG in a container's environment
            try:
                return parse_config(json.loads(path), exclude=exclude or ())
            except json.JSONDecodeError as exc:
                raise ConfigError(f"inline config: not valid JSON ({exc.msg} at column {exc.colno})") from None
        return load_config(path, exclude=exclude or ())
    except ConfigError as exc:
        print(f"ptc-mcp: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


class _VersionAction(argparse.Action):
    """``--version``: the version, the interpreter, and which sandbox the default config gets here (and why)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from ptc_mcp.sandboxes import sandbox_report

        print(f"ptc-mcp {__version__} (Python {sys.version.split()[0]} at {sys.executable})")
        print(sandbox_report(Config()).text())
        parser.exit()


def cmd_serve(args: argparse.Namespace) -> int:
    from ptc_mcp.app import open_app
    from ptc_mcp.server import build_server
    from ptc_mcp.transports import serve_stdio

    if not args.config:
        print(f"ptc-mcp: serve needs --config (or {CONFIG_ENV})", file=sys.stderr)
        return 2
    config = _load(args.config, args.exclude)
    token = args.auth_token or os.environ.get(AUTH_TOKEN_ENV) or None
    if args.json_logs or config.remote.json_logs:
        from ptc_mcp.remote.logs import use_json_logs

        use_json_logs()

    directory: DirectoryFactory | None = None
    if args.transport != "stdio":  # a network face: sessions may live in a map every instance shares
        from ptc_mcp.remote.shared_sessions import shared_directory

        directory = shared_directory

    async def main() -> None:
        async with open_app(config, session_directory=directory) as app, anyio.create_task_group() as background:
            if not args.config.lstrip().startswith("{"):  # a file: reload it on SIGHUP or when it changes
                from ptc_mcp.reload import watch_config

                background.start_soon(watch_config, app, args.config, None, args.exclude)
            server = build_server(app, one_client=args.transport == "stdio")
            if args.transport == "stdio":
                app.announce_ready("stdio")
                await serve_stdio(server)
            else:
                from ptc_mcp.remote.serve import serve_remote

                await serve_remote(app, server, args.transport, args.host, args.port, token)
            background.cancel_scope.cancel()

    try:
        anyio.run(main)
    except (SandboxUnavailableError, ConfigError) as exc:
        print(f"ptc-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ptc_mcp.app import open_app
    from ptc_mcp.downstream.login_cli import auth_status
    from ptc_mcp.sandboxes import sandbox_report

    config = _load(args.config, args.exclude)

    async def main() -> int:
        async with open_app(config, allow_unisolated=True) as app:
            backend = app.backend
            isolation = "isolated" if backend.isolated else "NOT ISOLATED"
            print(f"sandbox: {backend.kind} ({isolation})")
            for line in sandbox_report(config, allow_unisolated=True).lines():
                print(f"  {line}")
            for line in effective_limits(config):
                print(line)
            for name, server in app.pool.servers.items():
                login = auth_status(name, server.config, server.login_needed, args.config)
                if server.login_needed is not None:
                    status = login
                elif name in app.pool.failures:
                    status = f"FAILED: {app.pool.failures[name]}"
                else:
                    status = f"{len(server.tools)} tools" + (f", {login}" if login else "")
                print(f"server {name}: {status}")
            print("\ntools:")
            not_callable = app.bridge.snapshot.not_callable
            for tool in app.pool.tools():
                if tool.qualified_name not in not_callable:
                    print(f"  {tool.qualified_name}")
            if not_callable:
                print("\nnot callable from programs (left out of the description):")
                for name, reason in sorted(not_callable.items()):
                    print(f"  {name}: {reason}")
            print("\nexecute_program description:\n")
            print(app.bridge.snapshot.description)
            failed = bool(app.pool.failures) or (not backend.isolated and not config.sandbox.allow_unisolated)
            if not backend.isolated and not config.sandbox.allow_unisolated:
                print("\nptc-mcp: no isolated sandbox here; `serve` would refuse to start", file=sys.stderr)
            return 1 if failed else 0

    try:
        return anyio.run(main)
    except (SandboxUnavailableError, ConfigError) as exc:  # a backend's own section is validated when it starts
        print(f"ptc-mcp: {exc}", file=sys.stderr)
        return 2


def cmd_demo(args: argparse.Namespace) -> int:
    from ptc_mcp.demo import run_demo

    return anyio.run(run_demo)


def cmd_example(args: argparse.Namespace) -> int:
    from ptc_mcp.examples.expenses import main as serve_expenses

    serve_expenses(args.options, prog="ptc-mcp example expenses")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    report: dict[str, Any] = args.run_bench(args)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def _bench_latency(args: argparse.Namespace) -> dict[str, Any]:
    from ptc_mcp.bench.latency import run_latency_bench

    kinds = tuple(kind for kind in args.backends.split(",") if kind and kind != "none")
    run = functools.partial(
        run_latency_bench,
        args.runs,
        args.output,
        kinds,
        args.rounds,
        against=args.against,
        against_label=args.against_label,
    )
    report: dict[str, Any] = anyio.run(run)
    return report


def _bench_catalog(args: argparse.Namespace) -> dict[str, Any]:
    from ptc_mcp.bench.catalog import run_catalog_bench

    return run_catalog_bench(json_output=args.json, output=args.output)


def _bench_load(args: argparse.Namespace) -> dict[str, Any]:
    from ptc_mcp.bench.load import run_load_benches

    settings = (("max_concurrent_runs", args.max_concurrent_runs), ("max_queued_runs", args.max_queued_runs))
    limits = {key: value for key, value in settings if value is not None}
    sandbox = {"max_sessions": args.max_sessions} if args.max_sessions is not None else {}
    run = functools.partial(
        run_load_benches,
        args.clients,
        args.programs,
        args.calls,
        args.mode,
        args.output,
        limits=limits,
        sandbox=sandbox,
    )
    report: dict[str, Any] = anyio.run(run)
    return report


def _counts(text: str) -> list[int]:
    """``64`` or ``32,64,128``."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or numbers separated by commas, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return counts


def _bench_soak(args: argparse.Namespace) -> dict[str, Any]:
    from ptc_mcp.bench.soak import run_soak_bench

    report: dict[str, Any] = anyio.run(run_soak_bench, args.runs, args.sample_every, args.output)
    return report


def _bench_tokens(args: argparse.Namespace) -> dict[str, Any]:
    from ptc_mcp.bench.tokens import run_from_cli

    return run_from_cli(args)


def add_bench_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``ptc-mcp bench NAME``: one subcommand per benchmark, each with its own options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output", default="docs/benchmarks.md", help="markdown file whose section is rewritten")
    common.add_argument("--json", action="store_true", help="print one JSON document")
    bench = commands.add_parser("bench", help="benchmarks (results in docs/benchmarks.md)")
    bench.set_defaults(func=cmd_bench)
    benches = bench.add_subparsers(dest="bench", required=True, metavar="{latency,catalog,tokens,load,soak}")

    latency = benches.add_parser("latency", parents=[common], help="round trips and nested calls per backend")
    latency.add_argument("--runs", type=int, default=300, help="measured runs per series")
    latency.add_argument(
        "--backends", default="process,srt,docker,agentcore", help="backends side by side ('none': skip)"
    )
    latency.add_argument("--rounds", type=int, default=20, help="interleaved rounds over the backends")
    latency.add_argument(
        "--against",
        metavar="COMMAND",
        help="also serve with this ptc-mcp command (e.g. 'env PYTHONPATH=/src/old python -m ptc_mcp'), measured in"
        " the same rounds: a before/after table",
    )
    latency.add_argument("--against-label", default="before", help="what the table calls --against's server")
    latency.set_defaults(run_bench=_bench_latency)

    catalog = benches.add_parser("catalog", parents=[common], help="description size and search quality")
    catalog.set_defaults(run_bench=_bench_catalog)

    tokens = benches.add_parser("tokens", parents=[common], help="tokens per task: traditional vs ptc")
    tokens.add_argument("--model", default="scripted", help="scripted (simulated) or bedrock:<model-id>")
    tokens.add_argument("--tasks", help="tasks from path.py[:ATTR] or package.module[:ATTR]")
    tokens.add_argument("--config", help="a config with the tasks' servers (default: built from the tasks)")
    tokens.add_argument("--region", help="AWS region for --model bedrock:…")
    tokens.add_argument("--endpoint-url", help="Bedrock Runtime endpoint (default: boto3's)")
    tokens.add_argument("--sequential", action="store_true", help="one tool call per traditional model call")
    tokens.set_defaults(run_bench=_bench_tokens)

    load = benches.add_parser("load", parents=[common], help="many clients at once through one server")
    load.add_argument(
        "--clients",
        type=_counts,
        default=[64],
        help="concurrent MCP clients; several (32,64,128) run one after another, reported side by side",
    )
    for option, what in (
        ("--max-concurrent-runs", "limits.max_concurrent_runs"),
        ("--max-queued-runs", "limits.max_queued_runs"),
        ("--max-sessions", "sandbox.max_sessions"),
    ):
        load.add_argument(option, type=int, help=f"set {what} (default: the server's default, sized here)")
    load.add_argument("--programs", type=int, default=50, help="programs per client")
    load.add_argument("--calls", type=int, default=10, help="nested tool calls per program")
    load.add_argument("--mode", choices=["legacy", "auto"], default="legacy", help="the clients' protocol mode")
    load.set_defaults(run_bench=_bench_load)

    soak = benches.add_parser("soak", parents=[common], help="many runs in one session: memory and leaks")
    soak.add_argument("--runs", type=int, default=10_000, help="runs")
    soak.add_argument("--sample-every", type=int, default=500, help="sample the server every N runs")
    soak.set_defaults(run_bench=_bench_soak)


def cmd_chat(args: argparse.Namespace) -> int:
    from ptc_mcp.agent.chat import run_chat

    return run_chat(args)


def _add_exclude(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="NAME",
        help="do not start this mcpServers entry (repeatable; e.g. the entry that runs ptc-mcp itself)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptc-mcp", description="Programmatic tool calling for any MCP client.")
    parser.add_argument(
        "--version", action=_VersionAction, help="show the version and which sandbox this machine gives, then exit"
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve execute_program to an MCP client")
    env = os.environ
    serve.add_argument(
        "--config", default=env.get(CONFIG_ENV), help=f"the JSON config file, or the JSON itself (or {CONFIG_ENV})"
    )
    serve.add_argument(
        "--transport",
        choices=["stdio", "sse", "http"],
        default=env.get("PTC_MCP_TRANSPORT", "stdio"),
        help="(or PTC_MCP_TRANSPORT)",
    )
    serve.add_argument(
        "--host",
        default=env.get("PTC_MCP_HOST", "127.0.0.1"),
        help="address for sse/http (default: loopback only; or PTC_MCP_HOST)",
    )
    serve.add_argument("--port", type=int, default=int(env.get("PTC_MCP_PORT", "8000")), help="(or PTC_MCP_PORT)")
    serve.add_argument("--auth-token", help=f"require 'Authorization: Bearer TOKEN' on HTTP (or set {AUTH_TOKEN_ENV})")
    serve.add_argument(
        "--json-logs",
        action="store_true",
        default=env.get("PTC_MCP_JSON_LOGS", "") not in ("", "0", "false"),
        help="log JSON lines on stderr (or remote.json_logs, PTC_MCP_JSON_LOGS=1)",
    )
    _add_exclude(serve)
    serve.set_defaults(func=cmd_serve)

    check = commands.add_parser("check", help="validate a config, connect to its servers, show what the model sees")
    check.add_argument("--config", required=True, help="the JSON config file (a client's whole config file works)")
    _add_exclude(check)
    check.set_defaults(func=cmd_check)

    demo = commands.add_parser("demo", help="run the bundled expense-audit example end to end")
    demo.set_defaults(func=cmd_demo)

    example = commands.add_parser(
        "example", help="serve a bundled example MCP server (for a config: works from any client, see README)"
    )
    example.add_argument("name", choices=["expenses"], help="expenses: the expense-audit server the demo uses")
    example.add_argument("options", nargs=argparse.REMAINDER, help="its own options (--transport, --port, ...)")
    example.set_defaults(func=cmd_example)

    add_bench_parser(commands)

    chat = commands.add_parser("chat", help="talk to a Bedrock model that uses the config's MCP tools")
    chat.add_argument("--model", required=True, help="bedrock:<model-id>")
    chat.add_argument("--config", required=True, help="the JSON config file (its mcpServers)")
    chat.add_argument(
        "--mode", choices=["ptc", "traditional"], default="ptc", help="offer execute_program or every tool"
    )
    chat.add_argument("--region", help="AWS region (default: boto3's)")
    chat.add_argument("--endpoint-url", help="Bedrock Runtime endpoint (default: boto3's; an emulator in tests)")
    chat.add_argument("--system", help="the system prompt")
    chat.set_defaults(func=cmd_chat)

    from ptc_mcp.downstream.login_cli import add_login_commands

    add_login_commands(commands, CONFIG_ENV)
    from ptc_mcp.proxy.cli import add_proxy_command

    add_proxy_command(commands)
    from ptc_mcp.emulators.cli import add_emulate_parser

    add_emulate_parser(commands)
    from ptc_mcp.remote.stores.cli import add_session_map_parser

    add_session_map_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        code: int = args.func(args)
    except BrokenPipeError:  # `ptc-mcp check | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush stays quiet
        return 0
    return code


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``ptc-mcp login NAME`` and ``ptc-mcp logout NAME`` commands."""

from __future__ import annotations

import argparse
import os
import sys

import anyio

from ptc_mcp.config import Config, HttpServerConfig, SseServerConfig, load_config
from ptc_mcp.errors import ConfigError

__all__ = ["add_login_commands", "auth_status"]


def _remote_entry(args: argparse.Namespace) -> HttpServerConfig | SseServerConfig | None:
    if not args.config:
        print(f"ptc-mcp: {args.command} needs --config", file=sys.stderr)
        return None
    try:
        config: Config = load_config(args.config)
    except ConfigError as exc:
        print(f"ptc-mcp: {exc}", file=sys.stderr)
        return None
    entry = config.mcp_servers.get(args.name)
    if entry is None:
        names = ", ".join(sorted(config.mcp_servers)) or "none"
        print(f"ptc-mcp: no server {args.name!r} in {args.config} (servers: {names})", file=sys.stderr)
        return None
    if not isinstance(entry, HttpServerConfig | SseServerConfig) or entry.auth is None:
        print(
            f'ptc-mcp: server {args.name!r} has no "auth": {{"type": "oauth"}}; nothing to log in to', file=sys.stderr
        )
        return None
    return entry


def cmd_login(args: argparse.Namespace) -> int:
    from ptc_mcp.downstream.login import login

    entry = _remote_entry(args)
    if entry is None:
        return 2
    assert entry.auth is not None
    if entry.auth.grant == "client_credentials":
        print(f"ptc-mcp: server {args.name!r} uses client credentials: no login needed", file=sys.stderr)
        return 0
    try:
        count = anyio.run(login, args.name, entry)
    except Exception as exc:
        from ptc_mcp.downstream.connection import describe_exception

        print(f"ptc-mcp: login to {args.name!r} failed: {describe_exception(exc)}", file=sys.stderr)
        return 1
    print(f"logged in to {args.name} ({count} tools)")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from ptc_mcp.downstream.login import logout

    entry = _remote_entry(args)
    if entry is None:
        return 2
    print(f"logged out of {args.name}" if logout(args.name, entry) else f"no stored tokens for {args.name}")
    return 0


def auth_status(name: str, entry: object, login_needed: str | None, config_path: str) -> str | None:
    """What ``check`` says about the OAuth of one server: ``None`` for servers without OAuth."""
    auth = getattr(entry, "auth", None)
    if auth is None:
        return None
    if login_needed is not None:
        return f"needs login: run `ptc-mcp login {name} --config {config_path}`"
    return "authenticated (client credentials)" if auth.grant == "client_credentials" else "authenticated"


def add_login_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser], config_env: str) -> None:
    """``ptc-mcp login`` and ``logout``; ``config_env`` names the variable that holds the config path."""
    for name, func, what in (
        ("login", cmd_login, "log in to a remote server behind OAuth (authorization code with PKCE) and store tokens"),
        ("logout", cmd_logout, "forget a remote server's stored OAuth tokens"),
    ):
        command = commands.add_parser(name, help=what)
        command.add_argument("name", help="the server's name in mcpServers")
        command.add_argument(
            "--config", default=os.environ.get(config_env), help=f"the JSON config file (or {config_env})"
        )
        command.set_defaults(func=func)

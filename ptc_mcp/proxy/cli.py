"""``ptc-mcp proxy``: the command-line face of the proxy (registered by ``ptc_mcp.cli``; imports stay lazy)."""

from __future__ import annotations

import argparse
import os
import sys

API_KEYS_ENV = "PTC_PROXY_API_KEYS"


def add_proxy_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proxy = commands.add_parser(
        "proxy",
        help="serve Anthropic's Messages API with programmatic tool calling on Bedrock models",
        description="An Anthropic-compatible /v1/messages endpoint that runs programmatic tool calling on any "
        "Bedrock model with tool use. Point the Anthropic SDK's base_url at it.",
    )
    proxy.add_argument(
        "--config",
        help="the JSON config file: sandbox, limits, optional mcpServers (default: the defaults, no servers)",
    )
    proxy.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback only)")
    proxy.add_argument("--port", type=int, default=8080)
    proxy.add_argument(
        "--model-map",
        help="Anthropic model name → Bedrock model id: 'name=id,name2=id2' or a JSON file; "
        "unmapped names go to Bedrock unchanged",
    )
    proxy.add_argument("--region", help="AWS region of Bedrock (default: boto3's)")
    proxy.add_argument("--endpoint-url", help="a Bedrock Runtime endpoint (an emulator, a VPC endpoint)")
    proxy.add_argument(
        "--api-key",
        action="append",
        default=[],
        help=f"accept this API key (repeatable; or comma-separated in {API_KEYS_ENV}); none configured: any key",
    )
    proxy.add_argument("--container-idle-s", type=float, default=270.0, help="container idle expiry (default 270)")
    proxy.add_argument(
        "--instance", default="", help="this instance's tag in container ids, for routing by container id"
    )
    proxy.add_argument(
        "--peers", help="the other instances, 'tag=http://host:port,…': requests for their containers are forwarded"
    )
    proxy.set_defaults(func=cmd_proxy)


def cmd_proxy(args: argparse.Namespace) -> int:
    import anyio

    from ptc_mcp.config import Config, load_config
    from ptc_mcp.errors import ConfigError, SandboxUnavailableError
    from ptc_mcp.proxy.models import ModelMap
    from ptc_mcp.proxy.routing import parse_peers
    from ptc_mcp.proxy.serve import serve_proxy

    try:
        config = load_config(args.config) if args.config else Config()
        model_map = ModelMap.parse(args.model_map)
        peers = parse_peers(args.peers)
    except (ConfigError, ValueError, OSError) as exc:
        sys.stderr.write(f"ptc-mcp: {exc}\n")
        return 2
    keys = [*args.api_key, *(k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip())]
    if not keys and args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(f"ptc-mcp: warning: listening on {args.host} without API keys: anyone can use it\n")

    async def main() -> None:
        await serve_proxy(
            config,
            host=args.host,
            port=args.port,
            region=args.region,
            endpoint_url=args.endpoint_url,
            model_map=model_map,
            api_keys=keys,
            container_idle_s=args.container_idle_s,
            instance=args.instance,
            peers=peers,
        )

    try:
        anyio.run(main)
    except SandboxUnavailableError as exc:
        sys.stderr.write(f"ptc-mcp: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 0
    return 0

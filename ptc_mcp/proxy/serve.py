"""Starting the proxy: config → ptc-mcp's app (executor, MCP servers) → containers → the ASGI app → uvicorn."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette

from ptc_mcp.config import Config
from ptc_mcp.proxy.app import build_app
from ptc_mcp.proxy.containers import DEFAULT_IDLE_S, ContainerRegistry
from ptc_mcp.proxy.models import BedrockModels, ModelClient, ModelMap
from ptc_mcp.proxy.turn import Proxy
from ptc_mcp.sandboxes.base import SandboxBackend

log = logging.getLogger(__name__)


@asynccontextmanager
async def open_proxy(
    config: Config,
    models: ModelClient,
    *,
    model_map: ModelMap | None = None,
    api_keys: Iterable[str] = (),
    container_idle_s: float = DEFAULT_IDLE_S,
    settle_s: float = 0.05,
    instance: str = "",
    peers: dict[str, str] | None = None,
    backend: SandboxBackend | None = None,
    allow_unisolated: bool | None = None,
) -> AsyncIterator[tuple[Proxy, Starlette]]:
    """A running proxy and its app. Programs can also call the config's MCP servers (``server.tool``)."""
    from ptc_mcp.app import open_app

    # A container keeps its variables between code executions: the proxy always needs the executor's sessions.
    config = config.model_copy(update={"sandbox": config.sandbox.model_copy(update={"stateless": False})})
    async with open_app(config, backend=backend, allow_unisolated=allow_unisolated) as app:
        bridge = app.bridge
        # The Messages API has no way to ask the user mid-program: runs get no client channel, so calls that need
        # approval are denied (and audited by the executor) and downstream servers' elicitation and sampling
        # requests get an error answer (docs/proxy.md).
        has_servers = bool(bridge.snapshot.tools)
        registry = ContainerRegistry(app.executor, settle_s=settle_s, idle_s=container_idle_s, instance=instance)
        async with registry:
            proxy = Proxy(
                models=models,
                registry=registry,
                model_map=model_map or ModelMap(),
                api_keys=frozenset(api_keys),
                peers=dict(peers or {}),
                server_tools_description=(
                    "MCP server tools (run by the proxy) are also callable:\n" + bridge.snapshot.description
                    if has_servers
                    else ""
                ),
            )
            yield proxy, build_app(proxy)


async def serve_proxy(
    config: Config,
    *,
    host: str,
    port: int,
    region: str | None = None,
    endpoint_url: str | None = None,
    **options: Any,
) -> None:
    """Serve until cancelled (``ptc-mcp proxy``)."""
    import uvicorn

    models = BedrockModels.create(region=region, endpoint_url=endpoint_url)
    async with open_proxy(config, models, **options) as (_, app):
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
        log.info("ptc-mcp proxy listening on http://%s:%d/v1/messages", host, port)
        await server.serve()

"""``ptc-mcp proxy``: Anthropic's Messages API with programmatic tool calling, on any Bedrock model.

The proxy translates requests to Bedrock Converse, runs the model's ``code_execution`` calls in ptc-mcp
sandboxes, pauses a program when it calls a client tool and hands that call to the client exactly as
Anthropic's API does. See docs/proxy.md.
"""

from ptc_mcp.proxy.app import build_app
from ptc_mcp.proxy.containers import ContainerRegistry
from ptc_mcp.proxy.errors import ApiError
from ptc_mcp.proxy.models import BedrockModels, ModelClient, ModelMap
from ptc_mcp.proxy.serve import open_proxy, serve_proxy
from ptc_mcp.proxy.turn import Proxy

__all__ = [
    "ApiError",
    "BedrockModels",
    "ContainerRegistry",
    "ModelClient",
    "ModelMap",
    "Proxy",
    "build_app",
    "open_proxy",
    "serve_proxy",
]

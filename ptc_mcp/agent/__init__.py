"""A small Bedrock Converse agent that is an MCP client, in two modes.

- ``traditional``: every downstream tool of the config is offered to the model directly;
- ``ptc``: only ptc-mcp's ``execute_program`` (from ``ptc-mcp serve --config`` over stdio).

``ptc-mcp chat`` is its terminal face and ``ptc-mcp bench tokens`` measures it. Models: ``BedrockConverse``
(boto3; Amazon Bedrock or an emulator at ``endpoint_url``); scripted trajectories replay through the Bedrock
emulator with ``ptc_mcp.bench.scripted.TrajectoryModel``. See docs/agent.md.
"""

from ptc_mcp.agent.converse import BedrockConverse, ConverseClient, parse_model_spec
from ptc_mcp.agent.loop import (
    DEFAULT_SYSTEM_PROMPT,
    Agent,
    AgentEvent,
    ModelFinished,
    ModelStarted,
    ToolFinished,
    ToolStarted,
    TurnResult,
    Usage,
)
from ptc_mcp.agent.toolsets import MODES, Mode, ToolOutcome, ToolSet, converse_tool_name, open_toolset

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "MODES",
    "Agent",
    "AgentEvent",
    "BedrockConverse",
    "ConverseClient",
    "Mode",
    "ModelFinished",
    "ModelStarted",
    "ToolFinished",
    "ToolOutcome",
    "ToolSet",
    "ToolStarted",
    "TurnResult",
    "Usage",
    "converse_tool_name",
    "open_toolset",
    "parse_model_spec",
]

"""The ``agentcore`` backend: programs run in an Amazon Bedrock AgentCore Code Interpreter session.

``backend.py`` (the backend and its resumable sessions), ``client.py`` (the AgentCore API through boto3) and
``steps.py`` (the stepped protocol: the runtime runs until its next tool call, the host answers, it resumes).
Needs the ``agentcore`` extra.
"""

from ptc_mcp.sandboxes.agentcore.backend import AgentCoreBackend, create_backend, probe

__all__ = ["AgentCoreBackend", "create_backend", "probe"]

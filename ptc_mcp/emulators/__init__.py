"""Local emulators of the cloud services ptc-mcp talks to, reached by the real SDKs through ``endpoint_url``.

Each emulator lives in its own module (``agentcore``: the AgentCore Code Interpreter data plane, served by
``ptc-mcp emulate agentcore``); ``eventstream`` encodes the AWS event-stream framing they share.
"""

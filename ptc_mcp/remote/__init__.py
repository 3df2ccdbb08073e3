"""Serving ptc-mcp to a network: auth, health, metrics, traces, JSON logs, graceful shutdown, shared sessions.

Everything here is for the HTTP transports (``ptc-mcp serve --transport http|sse``); stdio never imports it.
Settings are the config file's ``remote`` section (``ptc_mcp.remote.settings``); docs/deploy.md says what each
one costs.
"""

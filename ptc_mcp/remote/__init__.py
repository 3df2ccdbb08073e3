"""Serving ptc-mcp to a network: health, metrics, traces, JSON logs, graceful shutdown, shared sessions.

Everything here is for the HTTP transports (``ptc-mcp serve --transport http|sse``); stdio never imports it. It is
built on the core and the core never imports it: its settings are the config file's ``remote`` section
(``ptc_mcp.config.remote``) and who may call is ``ptc_mcp.auth`` (both read by the transports). docs/deploy.md says
what each setting costs.
"""

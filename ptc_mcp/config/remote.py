"""The config file's ``remote`` section: how the HTTP transports face a network.

Kept apart from ``ptc_mcp.config`` so its models stay small; ``Config.remote`` holds one ``RemoteConfig``.
Every value expands ``${VAR}`` like the rest of the file, which is how a container passes secrets in.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["AuthConfig", "RemoteConfig", "SessionMapConfig", "TracingConfig"]

DEFAULT_MAX_REQUEST_BODY_BYTES = 32 * 1024 * 1024
"""Large enough that an oversized program reaches execute_program and is refused there as ``invalid_input``."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthConfig(_Strict):
    """Who may call the server. ``bearer``: shared static tokens; ``oauth``: an OAuth 2.1 resource server."""

    mode: Literal["none", "bearer", "oauth"] = "none"
    tokens: list[str] = Field(default_factory=list)
    """``bearer``: the accepted tokens (``${VAR}`` them in). Empty strings are ignored, so an unset variable with
    a ``:-`` default cannot open the door."""
    issuer: str | None = Field(default=None, pattern=r"^https?://")
    """``oauth``: the authorization server (the tokens' ``iss``; advertised in protected-resource metadata)."""
    audience: list[str] = Field(default_factory=list)
    """``oauth``: accepted ``aud`` values (usually this server's URL); empty: ``resource_server_url``."""
    required_scopes: list[str] = Field(default_factory=list)
    """Every request needs all of these scopes (403 ``insufficient_scope`` otherwise). ``bearer`` tokens hold them."""
    resource_server_url: str | None = Field(default=None, pattern=r"^https?://")
    """``oauth``: this server's public URL (``https://mcp.example.com/mcp``): the RFC 9728 metadata names it."""
    jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    """``oauth``, JWT access tokens signed by the issuer's keys (RS256/ES256...), fetched and cached."""
    shared_secret: str | None = Field(default=None, min_length=32)
    """``oauth``, JWT access tokens signed with a shared HMAC key (HS256); at least 32 characters."""
    public_key_file: str | None = None
    """``oauth``, JWT access tokens checked against one PEM public key file."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    introspection_url: str | None = Field(default=None, pattern=r"^https?://")
    """``oauth``, opaque tokens checked by RFC 7662 introspection (one request per token, cached briefly)."""
    introspection_client_id: str | None = None
    introspection_client_secret: str | None = None
    leeway_s: float = Field(default=30.0, ge=0, le=600)
    """Clock skew allowed on ``exp``/``nbf``/``iat``."""
    cache_s: float = Field(default=60.0, ge=0, le=3600)
    """How long a verified token (or the JWKS) is remembered; 0: check every request."""

    @model_validator(mode="after")
    def _complete(self) -> AuthConfig:
        if self.mode == "bearer" and not any(self.tokens):
            raise ValueError("mode 'bearer' needs at least one non-empty token in remote.auth.tokens")
        if self.mode == "oauth":
            if self.issuer is None:
                raise ValueError("mode 'oauth' needs remote.auth.issuer")
            sources = [self.jwks_url, self.shared_secret, self.public_key_file, self.introspection_url]
            if sum(source is not None for source in sources) != 1:
                raise ValueError(
                    "mode 'oauth' needs exactly one of jwks_url, shared_secret, public_key_file, introspection_url"
                )
            if not self.audience and self.resource_server_url is None:
                raise ValueError("mode 'oauth' needs remote.auth.audience or remote.auth.resource_server_url")
        return self


class TracingConfig(_Strict):
    """OpenTelemetry spans: one per run, one per nested tool call (the ``otel`` extra; off by default)."""

    enabled: bool = False
    service_name: str = "ptc-mcp"
    exporter: Literal["otlp", "console", "none"] = "otlp"
    """``otlp`` reads the standard ``OTEL_EXPORTER_OTLP_*`` variables; ``none`` leaves provider set-up to you."""


class SessionMapConfig(_Strict):
    """Where session handles are looked up, so any instance can resume a session (``agentcore`` backend)."""

    kind: Literal["local", "sqlite", "redis", "dynamodb"] = "local"
    """``local``: this instance only (sticky routing for sessions); ``sqlite``: a file the processes of one host
    share; ``redis`` or ``dynamodb``: a network store for a fleet."""
    path: str | None = None
    """``sqlite``: the database file (a local disk or a Docker volume that every process mounts)."""
    url: str | None = Field(default=None, pattern=r"^(rediss?|unix)://")
    """``redis``: ``redis://[user:password@]host:6379/0``; ``rediss://`` for TLS; AUTH through the URL."""
    key_prefix: str = Field(default="ptc-mcp:", max_length=64)
    """``redis``: the prefix of every key ptc-mcp writes (several deployments can share one Redis)."""
    table: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    """``dynamodb``: the table (``ptc-mcp session-map create-table`` or the Fargate template creates it)."""
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    """``dynamodb``: AWS region; default: boto3's (``AWS_REGION``)."""
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://")
    """``dynamodb``: endpoint override (a VPC endpoint, or the local emulator ``ptc-mcp emulate dynamodb``)."""
    max_attempts: int = Field(default=8, ge=1, le=20)
    """``dynamodb``: attempts per request on throttling and transient errors (exponential backoff with jitter)."""
    lease_s: float = Field(default=10.0, ge=1, le=600)
    """How long a lease lasts unless renewed; a running program's instance renews it every third of that. A killed
    instance's sessions can be continued by others this long after it died."""

    @model_validator(mode="after")
    def _complete(self) -> SessionMapConfig:
        needed = {"sqlite": ("path", self.path), "redis": ("url", self.url), "dynamodb": ("table", self.table)}
        if self.kind in needed and not needed[self.kind][1]:
            raise ValueError(f"kind {self.kind!r} needs remote.session_map.{needed[self.kind][0]}")
        return self


class RemoteConfig(_Strict):
    """How ``serve --transport http|sse`` faces a network."""

    auth: AuthConfig = Field(default_factory=AuthConfig)
    allowed_hosts: list[str] = Field(default_factory=list)
    """Host headers accepted (``mcp.example.com``, ``10.0.*:*``...); empty: loopback names when bound to loopback,
    no Host check otherwise. Setting it turns DNS-rebinding protection on for any bind address."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Origin headers accepted when a browser sends one (``https://app.example.com``)."""
    max_request_body_bytes: int = Field(default=DEFAULT_MAX_REQUEST_BODY_BYTES, ge=64 * 1024)
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=3600)
    """On SIGTERM: stop taking requests, let running programs finish this long, then cancel the rest."""
    stateless_http: bool = False
    """No MCP session over streamable HTTP (no ``Mcp-Session-Id``): any instance serves any request; clients
    continue a session by its ``session`` handle."""
    health: bool = True
    """Serve ``/healthz`` and ``/readyz`` (unauthenticated: load balancers carry no token)."""
    metrics: bool = True
    """Serve Prometheus ``/metrics``."""
    metrics_auth: bool = False
    """``/metrics`` requires the same credentials as ``/mcp``."""
    json_logs: bool = False
    """Log records as one JSON object per line on stderr (CloudWatch, Loki...)."""
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    session_map: SessionMapConfig = Field(default_factory=SessionMapConfig)

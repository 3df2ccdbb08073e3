"""The config file: one JSON document, validated at start-up.

Downstream servers use the ``mcpServers`` shape of Claude Desktop and Claude Code, so users can paste their
existing config; a client's whole config file is accepted as it is (``ptc_mcp.client_files``). ``${VAR}``,
``${VAR:-default}`` and VS Code's ``${env:VAR}`` expand from the environment in every string value. Unknown keys in
ptc-mcp's own sections and bad values fail at start-up with a ``ConfigError`` that names the key.

The ``remote`` section's models are in ``remote.py``; where a user's files live (the OAuth token store) in
``paths.py``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from ptc_mcp.capacity import size_capacity, this_machine
from ptc_mcp.client_files import normalize
from ptc_mcp.config.remote import RemoteConfig
from ptc_mcp.errors import ConfigError, validation_problems

log = logging.getLogger(__name__)

_VAR = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SERVER_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")

RUN_TIMEOUT_S = 50.0
"""The default run limit ends a runaway program, with a ``timeout`` result, before the clients give up: the
TypeScript SDK (Claude Desktop, IDEs) times a request out after 60 s, the Inspector after 60 s in total (docs)."""
DOWNSTREAM_TIMEOUT_S = 40.0
"""A hung downstream call fails (``ToolError``, ``error_type == "timeout"``) while the program can still react."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StdioServerConfig(_Strict):
    """A server ptc-mcp starts as a child process and talks to over stdin/stdout."""

    type: Literal["stdio"] = "stdio"
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    timeout_s: float = Field(
        default=DOWNSTREAM_TIMEOUT_S, gt=0, description="Per-call timeout for this server's tools."
    )


class OAuthConfig(_Strict):
    """OAuth 2.1 for a remote server (``ptc_mcp.downstream.oauth``): the MCP authorization spec's flows.

    ``authorization_code`` (the default) needs one ``ptc-mcp login NAME``; ``client_credentials`` needs no person.
    """

    type: Literal["oauth"]
    grant: Literal["authorization_code", "client_credentials"] = "authorization_code"
    client_id: str | None = Field(default=None, min_length=1)
    """A client registered by hand; without it the client registers itself (metadata document or dynamically)."""
    client_secret: str | None = Field(default=None, min_length=1)
    """For confidential clients; write it as ``${VAR}`` so it stays out of the file."""
    scopes: list[str] = Field(default_factory=list)
    client_metadata_url: str | None = Field(default=None, pattern=r"^https://[^/]+/.+")
    """An HTTPS URL where a client ID metadata document is published, used where the server supports them."""
    issuer: str | None = Field(default=None, pattern=r"^https?://")
    """The authorization server the ``client_id``/``client_secret`` belong to (credentials go nowhere else)."""
    redirect_port: int = Field(default=0, ge=0, le=65535)
    """The loopback port ``login`` receives the redirect on (0: any free port; fix it for a pre-registered client)."""

    @model_validator(mode="after")
    def _grant_needs(self) -> OAuthConfig:
        if self.grant == "client_credentials" and (self.client_id is None or self.client_secret is None):
            raise ValueError("grant client_credentials needs client_id and client_secret")
        if self.client_secret is not None and self.client_id is None:
            raise ValueError("client_secret needs client_id")
        return self


class HttpServerConfig(_Strict):
    """A server reached over MCP streamable HTTP."""

    type: Literal["http", "streamable-http", "streamable_http"] = "http"
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=DOWNSTREAM_TIMEOUT_S, gt=0)
    auth: OAuthConfig | None = None


class SseServerConfig(_Strict):
    """A server reached over the legacy HTTP+SSE transport."""

    type: Literal["sse"]
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=DOWNSTREAM_TIMEOUT_S, gt=0)
    auth: OAuthConfig | None = None


def _server_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        kind = value.get("type")
        if kind is None:
            return "http" if "url" in value else "stdio"
        return {"streamable-http": "http", "streamable_http": "http"}.get(str(kind), str(kind))
    return "stdio"


ServerConfig = Annotated[
    Annotated[StdioServerConfig, Tag("stdio")]
    | Annotated[HttpServerConfig, Tag("http")]
    | Annotated[SseServerConfig, Tag("sse")],
    Discriminator(_server_kind),
]


class SandboxConfig(_Strict):
    """Which sandbox backend runs programs, and its settings."""

    kind: Literal["auto", "process", "srt", "docker", "agentcore"] = "auto"
    allow_unisolated: bool = False
    """Run programs in a plain child process when no isolation is available. Off by default: say so explicitly."""
    stateless: bool = False
    """A fresh sandbox for every call instead of one live interpreter per session."""
    session_idle_s: float = Field(default=900.0, gt=0)
    unclaimed_session_idle_s: float = Field(default=120.0, gt=0)
    """Idle limit of a session started without a handle that nobody has continued or bound to a connection yet."""
    max_sessions: int = Field(default=32, ge=1)
    """Sized from the machine when the config leaves it out (``ptc_mcp.capacity``); 32 only for a bare model."""
    scratch_mb: int = Field(default=64, ge=1)
    max_processes: int = Field(default=64, ge=1)
    max_open_files: int = Field(default=256, ge=16)
    warm_pool: int = Field(default=2, ge=0, le=64)
    """Interpreters (containers) the ``process``, ``srt`` and ``docker`` backends keep started, so a new session
    skips start-up (0: none)."""
    warm_max_age_s: float = Field(default=300.0, gt=0)
    """A warm interpreter unused for this long is replaced by a fresh one."""
    docker: dict[str, Any] = Field(default_factory=dict)
    agentcore: dict[str, Any] = Field(default_factory=dict)
    srt: dict[str, Any] = Field(default_factory=dict)
    """Settings of the ``srt`` backend (Anthropic's sandbox-runtime): ``{"command": "srt"}``."""


class LimitsConfig(_Strict):
    """Limits of one run. Every one ends the run with a typed error when crossed."""

    timeout_s: float = Field(default=RUN_TIMEOUT_S, gt=0, le=86400)
    max_output_bytes: int = Field(default=32768, ge=256)
    max_tool_calls: int = Field(default=500, ge=0)
    max_concurrent_runs: int = Field(default=8, ge=1)
    """Sized from the machine when the config leaves it out (``ptc_mcp.capacity``); 8 only for a bare model."""
    max_queued_runs: int = Field(default=32, ge=0)
    """Sized from the machine when the config leaves it out (``ptc_mcp.capacity``); 32 only for a bare model."""
    memory_mb: int = Field(default=512, ge=64)
    max_code_bytes: int = Field(default=1_000_000, ge=1024)
    input_timeout_s: float = Field(default=120.0, gt=0, le=86400)
    """How long a run waits for its client to answer one question (an approval, or a downstream server's
    elicitation or sampling request) before the question fails; ``timeout_s`` keeps counting meanwhile."""


class ToolsPolicyConfig(_Strict):
    """Which downstream tools programs may call: globs on ``server.tool``; deny wins."""

    allow: list[str] = Field(default_factory=lambda: ["*"])
    deny: list[str] = Field(default_factory=list)
    read_only: bool = False
    """Allow only tools their server marks ``readOnlyHint: true`` (the server's claim), on top of the globs."""
    approve: list[str] = Field(default_factory=list)
    """Globs of tools a person must approve (through the client's elicitation) before each call runs."""
    approve_destructive: bool = False
    """Also ask before every tool its server marks ``destructiveHint: true`` and not ``readOnlyHint``."""


class AuditConfig(_Strict):
    """The audit trail: one JSON line per run and per nested tool call."""

    enabled: bool = True
    file: str | None = None
    """Append the lines to this file instead of writing them to stderr."""
    include_arguments: bool = False
    """Also record the arguments of each nested call (off: they may carry data the program read elsewhere)."""
    fail_closed: bool = False
    """While the trail cannot be written, refuse runs (``busy``) and tool calls instead of only saying so loudly."""


class Config(_Strict):
    """The whole config file."""

    mcp_servers: dict[str, ServerConfig] = Field(default_factory=dict, alias="mcpServers")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    tools: ToolsPolicyConfig = Field(default_factory=ToolsPolicyConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    remote: RemoteConfig = Field(default_factory=RemoteConfig)
    """How ``serve --transport http|sse`` faces a network (``ptc_mcp.config.remote``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this config was read from (``None`` for an inline config): sandboxes must not read it."""
        return self._source

    _sized: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def sized(self) -> dict[str, str]:
        """The capacity settings sized from this machine (left out of the config), each with its arithmetic."""
        return dict(self._sized)

    @model_validator(mode="after")
    def _size_from_the_machine(self) -> Config:
        given = self.limits.model_fields_set | self.sandbox.model_fields_set
        if {"max_concurrent_runs", "max_queued_runs", "max_sessions"} <= given or not _interpreters_live_here(self):
            return self
        capacity = size_capacity(
            this_machine(),
            self.limits.memory_mb,
            runs=self.limits.max_concurrent_runs if "max_concurrent_runs" in given else None,
            sessions=self.sandbox.max_sessions if "max_sessions" in given else None,
        )
        sized = {
            "max_concurrent_runs": capacity.max_concurrent_runs,
            "max_queued_runs": capacity.max_queued_runs,
            "max_sessions": capacity.max_sessions,
        }
        sized = {key: value for key, value in sized.items() if key not in given}
        limits = {key: value for key, value in sized.items() if key != "max_sessions"}
        # Frozen models: the sized values replace the placeholders once, here, before anything reads them.
        object.__setattr__(self, "limits", self.limits.model_copy(update=limits))
        if "max_sessions" in sized:
            object.__setattr__(self, "sandbox", self.sandbox.model_copy(update={"max_sessions": sized["max_sessions"]}))
        self._sized = {"memory": capacity.arithmetic["memory"]} | {key: capacity.arithmetic[key] for key in sized}
        return self

    @field_validator("mcp_servers")
    @classmethod
    def _server_names(cls, servers: dict[str, Any]) -> dict[str, Any]:
        for name in servers:
            if not SERVER_NAME.match(name):
                raise ValueError(f"server name {name!r} must use only letters, digits, '_' and '-'")
        return servers


def _interpreters_live_here(config: Config) -> bool:
    """Whether this machine's memory bounds the interpreters: not for AgentCore (in AWS) or a remote Docker engine."""
    if config.sandbox.kind == "agentcore":
        return False
    if config.sandbox.kind == "docker":
        return os.environ.get("DOCKER_HOST", "unix://").startswith("unix://")
    return True


def effective_limits(config: Config) -> list[str]:
    """The limits in force (``check`` prints them) and, for those sized from this machine, the arithmetic."""
    limits = config.limits
    lines = [
        f"limits: {limits.max_concurrent_runs} programs at once, {limits.max_queued_runs} more waiting,"
        f" {config.sandbox.max_sessions} sessions held; each run: {limits.timeout_s:g} s, {limits.memory_mb} MB,"
        f" {limits.max_tool_calls} tool calls, {limits.max_output_bytes} bytes of output"
    ]
    sized = config.sized
    if sized:
        lines.append("  sized from this machine (set them in the config to override):")
        lines.extend(f"    {key}: {arithmetic}" for key, arithmetic in sized.items())
    return lines


def expand_env(value: Any, environ: Mapping[str, str], path: str = "") -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of a JSON value."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{path or '<root>'}: environment variable {name} is not set (write ${{{name}:-default}})"
            )

        return _VAR.sub(substitute, value)
    if isinstance(value, list):
        return [expand_env(item, environ, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: expand_env(item, environ, f"{path}.{key}" if path else key) for key, item in value.items()}
    return value


def _keys(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def _entry_keys() -> set[str]:
    return _keys(StdioServerConfig) | _keys(HttpServerConfig) | _keys(SseServerConfig)


def parse_config(data: Any, environ: Mapping[str, str] | None = None, exclude: Iterable[str] = ()) -> Config:
    """Validate a decoded config document (or a client's whole config file); raises ``ConfigError`` naming the
    first bad key. ``exclude`` names ``mcpServers`` entries not to start."""
    if not isinstance(data, dict):
        raise ConfigError("the config must be a JSON object")
    accepted = normalize(data, exclude, _entry_keys(), _keys(Config))
    if (summary := accepted.summary()) is not None:
        log.warning("config: %s", summary)
    expanded = expand_env(accepted.document, os.environ if environ is None else environ)
    try:
        return Config.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError("invalid config: " + validation_problems(exc)) from None


def load_config(path: str | Path, environ: Mapping[str, str] | None = None, exclude: Iterable[str] = ()) -> Config:
    """Read and validate a config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    config = parse_config(data, environ, exclude)
    config._source = Path(path).resolve()
    return config

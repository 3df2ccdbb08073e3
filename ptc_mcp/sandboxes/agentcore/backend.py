"""The ``agentcore`` backend: programs run in Amazon Bedrock AgentCore Code Interpreter sessions.

One ``AgentCoreSession`` is one code-interpreter session. The runtime is installed into the interpreter's persistent
process once, then each program is driven in steps (docs/backends/agentcore.md): an ``executeCode`` delivers the run
or the results of tool calls and returns when the program is done or blocked on tool calls; ptc-mcp runs those
calls on the host, so the interpreter needs neither network nor credentials. Calls made together travel in one step.

The interpreter session lives in AWS, not in this process, so a session can move between ptc-mcp instances:
``session_state()`` describes it as JSON, ``AgentCoreBackend.resume_session(state)`` re-attaches to it from any
instance with access to the same code interpreter, and ``detach()`` lets go of it without stopping it
(``ptc_mcp.remote.shared_sessions`` uses the three).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, NoRegionError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ptc_mcp.config import Config
from ptc_mcp.errors import ConfigError, SandboxFailure, raise_from_group, validation_problems
from ptc_mcp.sandboxes.agentcore.client import InterpreterClient, ToolOutput, aws_failure
from ptc_mcp.sandboxes.agentcore.steps import DRIVER, StepCodec
from ptc_mcp.sandboxes.base import BackendInfo, OutputSink, RunReport, RunRequest, ToolCallHandler
from ptc_mcp.sandboxes.protocol import (
    OUTPUT_FLUSH_S,
    STEP_WAIT_S,
    Call,
    Done,
    ProtocolError,
    answer_call,
    cancel_message,
    report_from_done,
    run_message,
)

__all__ = ["AgentCoreBackend", "AgentCoreSession", "AgentCoreSettings", "create_backend"]

log = logging.getLogger(__name__)

DEFAULT_INTERPRETER = "aws.codeinterpreter.v1"
STOP_TIMEOUT_S = 30.0
_EXPIRY_GRACE_S = 30.0
_MIN_USABLE_S = 60.0
_MAX_IDLE_STEPS = 3


class AgentCoreSettings(BaseModel):
    """``sandbox.agentcore`` in the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    """AWS region; default: boto3's (``AWS_REGION``, the profile's region)."""
    code_interpreter_id: str = Field(default=DEFAULT_INTERPRETER, min_length=1, max_length=256)
    """``aws.codeinterpreter.v1`` (AWS-managed, sandbox network mode) or the id of a custom code interpreter."""
    session_timeout_s: int = Field(default=900, ge=60, le=28800)
    """AgentCore ends a session this long after it started; ptc-mcp retires it before then."""
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://")
    """Data-plane endpoint override, e.g. the local emulator (``ptc-mcp emulate agentcore``)."""
    profile: str | None = None
    """A named profile of the AWS config files; default: boto3's default credential chain."""
    step_wait_s: float = Field(default=STEP_WAIT_S, gt=0, le=120)
    """Longest one ``executeCode`` waits for a busy program before returning (the next step resumes waiting)."""
    output_interval_s: float = Field(default=OUTPUT_FLUSH_S, gt=0, le=60)
    """Output of a busy program reaches the host at least this often (each delivery costs one ``executeCode``)."""
    max_attempts: int = Field(default=6, ge=1, le=20)
    """Attempts per AWS request for throttling and transient errors (exponential backoff with jitter)."""


def load_settings(config: Config) -> AgentCoreSettings:
    """Validate ``sandbox.agentcore``; errors name the key (``sandbox.agentcore.<key>``)."""
    try:
        settings = AgentCoreSettings.model_validate(config.sandbox.agentcore)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, under="sandbox.agentcore")) from None
    shortest = config.limits.timeout_s + _EXPIRY_GRACE_S + _MIN_USABLE_S
    if settings.session_timeout_s < shortest:
        raise ConfigError(
            f"sandbox.agentcore.session_timeout_s: must be at least {shortest:g} (limits.timeout_s + "
            f"{_EXPIRY_GRACE_S + _MIN_USABLE_S:g}): a session retires limits.timeout_s + {_EXPIRY_GRACE_S:g} s "
            "before AgentCore ends it"
        )
    return settings


class AgentCoreSession:
    """One AgentCore code-interpreter session holding an installed runtime."""

    def __init__(self, client: InterpreterClient, sdk: Any, settings: AgentCoreSettings, retire_after_s: float) -> None:
        self._client = client
        self._sdk = sdk
        self._codec = StepCodec(settings.step_wait_s, settings.output_interval_s)
        self._wait_s = settings.step_wait_s
        self._retire_at = time.monotonic() + retire_after_s
        self._retire_at_epoch = time.time() + retire_after_s
        self._seq = 0
        self._orphan_run: str | None = None
        self._catalog_version: str | None = None
        self._closed = False
        self._broken = False
        self.session_id: str = sdk.session_id
        self.python_version: str | None = None
        self.steps = 0
        """``executeCode`` round trips of the last run."""
        self.step_seconds: list[float] = []
        """Wall time of each of those round trips."""

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def alive(self) -> bool:
        return not (self._closed or self._broken) and time.monotonic() < self._retire_at

    def session_state(self) -> dict[str, Any] | None:
        """What another instance needs to resume this session (``None`` once it is closed, broken or retired)."""
        if not self.alive:
            return None
        return {
            "backend": "agentcore",
            "code_interpreter_id": self._client.identifier,
            "session_id": self.session_id,
            "retire_at": self._retire_at_epoch,
        }

    def detach(self) -> None:
        """Forget the session here without stopping it in AWS (another instance may be resuming it)."""
        self._closed = True

    async def reattach(self) -> None:
        """Continue after another instance: learn the runtime's last step (installing it if the process is new).

        An instance that died mid-run leaves its run in the interpreter (blocked on a tool call nobody answers,
        say): the next run cancels it first, so the runtime takes the new run at once.
        """
        probe = (
            f"import json as _ptc_json\n"
            f"print({self._codec.marker!r} + _ptc_json.dumps("
            f"{{'seq': {DRIVER}.last_seq, 'run': {DRIVER}.runtime.run_id if {DRIVER}.running else None}}"
            f" if {DRIVER!r} in globals() else None))\n"
        )
        output = await self._invoke(probe)
        text = self._codec.answer(output.stdout or output.text)
        try:
            found = json.loads(text) if text is not None else None
        except ValueError:
            found = None
        if isinstance(found, dict) and isinstance(found.get("seq"), int):
            self._seq = found["seq"]
            orphan = found.get("run")
            self._orphan_run = orphan if isinstance(orphan, str) else None
            return
        await self.install()  # the interpreter process was replaced: its variables are gone anyway

    async def _invoke(self, code: str) -> ToolOutput:
        call = functools.partial(self._client.invoke, self._sdk, "executeCode", {"code": code, "language": "python"})
        try:
            # Abandoned on cancel: the executor's timeout must not wait for an HTTP read; aclose stops the session.
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except Exception as exc:
            self._broken = True
            raise aws_failure(exc, "executeCode") from None

    async def install(self) -> None:
        output = await self._invoke(self._codec.install_code())
        try:
            ready = self._codec.parse_ready(output.stdout or output.text)
        except ProtocolError:
            self._broken = True
            raise SandboxFailure(f"could not install the ptc-mcp runtime: {_excerpt(output)}") from None
        self.python_version = ready.python

    async def _step(self, messages: list[dict[str, Any]]) -> list[Any]:
        self._seq += 1
        started = time.monotonic()
        output = await self._invoke(self._codec.step_code(self._seq, messages))
        self.steps += 1
        self.step_seconds.append(time.monotonic() - started)
        try:
            answer = self._codec.parse_step(output.stdout or output.text)
        except ProtocolError:
            self._broken = True
            raise
        if answer is None:
            self._broken = True
            raise SandboxFailure(f"the interpreter did not run a step: {_excerpt(output)}")
        return answer

    async def run(self, request: RunRequest, call_tool: ToolCallHandler, output: OutputSink) -> RunReport:
        if self._closed or self._broken:
            raise SandboxFailure("the AgentCore session is closed or broken")
        fresh_catalog = request.catalog_version != self._catalog_version
        inbox: list[dict[str, Any]] = [run_message(request, with_catalog=fresh_catalog)]
        if self._orphan_run is not None:  # a dead instance's run: cancelled before ours is delivered
            inbox.insert(0, cancel_message(self._orphan_run))
            self._orphan_run = None
        self._catalog_version = request.catalog_version
        self.steps = 0
        self.step_seconds = []
        idle_steps = 0
        while True:
            started = time.monotonic()
            messages = await self._step(inbox)
            calls: list[Call] = []
            for message in messages:
                if message.id != request.run_id:
                    continue  # stale: never taken for this run's protocol
                if isinstance(message, Call):
                    calls.append(message)
                elif isinstance(message, Done):
                    return report_from_done(message)
                else:
                    output.write(message.stream, message.data)
            if calls:
                inbox = await _answer_all(request.run_id, calls, call_tool)
                idle_steps = 0
                continue
            inbox = []
            # A step that returns at once with nothing at all means the runtime lost the run: never spin on it.
            if not messages and time.monotonic() - started < self._wait_s / 2:
                idle_steps += 1
                if idle_steps >= _MAX_IDLE_STEPS:
                    self._broken = True
                    raise SandboxFailure("the runtime in the interpreter stopped answering for this run")
            else:
                idle_steps = 0

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_TIMEOUT_S):
            try:
                await anyio.to_thread.run_sync(self._client.stop, self._sdk)
            except Exception as exc:
                log.warning("could not stop AgentCore session %s: %s", self.session_id, aws_failure(exc, "stop"))


class AgentCoreBackend:
    """Starts ``AgentCoreSession``s in one code interpreter (isolated: the interpreter runs in AWS's sandbox)."""

    kind = "agentcore"
    isolated = True

    def __init__(
        self, settings: AgentCoreSettings, *, run_timeout_s: float = 60.0, boto_session: Any | None = None
    ) -> None:
        self.settings = settings
        try:
            self._client = InterpreterClient(
                region=settings.region,
                identifier=settings.code_interpreter_id,
                endpoint_url=settings.endpoint_url,
                profile=settings.profile,
                max_attempts=settings.max_attempts,
                read_timeout_s=settings.step_wait_s + 60,
                boto_session=boto_session,
            )
        except NoRegionError:
            raise ConfigError("sandbox.agentcore.region: no AWS region: set it, or AWS_REGION") from None
        except BotoCoreError as exc:  # an unknown profile, say
            raise ConfigError(f"sandbox.agentcore: {exc}") from None
        self._retire_after_s = settings.session_timeout_s - run_timeout_s - _EXPIRY_GRACE_S
        self._sessions: set[AgentCoreSession] = set()

    def info(self) -> BackendInfo:
        """What ``ptc-mcp check`` shows."""
        return BackendInfo(
            kind=self.kind,
            isolated=True,
            details={
                "region": str(self._client.region),
                "code_interpreter": self.settings.code_interpreter_id,
                "endpoint": self._client.endpoint,
                "session_timeout_s": str(self.settings.session_timeout_s),
            },
        )

    async def start_session(self) -> AgentCoreSession:
        self._sessions = {session for session in self._sessions if not session.closed}
        try:
            sdk = await anyio.to_thread.run_sync(self._client.start, self.settings.session_timeout_s)
        except Exception as exc:
            raise aws_failure(exc, "StartCodeInterpreterSession") from None
        session = AgentCoreSession(self._client, sdk, self.settings, self._retire_after_s)
        self._sessions.add(session)
        try:
            await session.install()
        except BaseException:
            await session.aclose()
            raise
        return session

    async def resume_session(self, state: dict[str, Any]) -> AgentCoreSession:
        """Re-attach to a session that ``session_state()`` described (here or on another instance)."""
        if state.get("backend") != "agentcore" or state.get("code_interpreter_id") != self._client.identifier:
            raise SandboxFailure("the session belongs to another code interpreter")
        retire_after_s = float(state.get("retire_at", 0)) - time.time()
        sdk = await anyio.to_thread.run_sync(self._client.attach, str(state["session_id"]))
        session = AgentCoreSession(self._client, sdk, self.settings, retire_after_s)
        self._sessions = {known for known in self._sessions if not known.closed}
        self._sessions.add(session)
        if session.alive:
            try:
                await session.reattach()
            except BaseException:
                session.detach()
                raise
        return session

    async def aclose(self) -> None:
        sessions, self._sessions = self._sessions, set()
        async with anyio.create_task_group() as group:
            for session in sessions:
                group.start_soon(session.aclose)


def probe(config: Config) -> tuple[bool, str]:
    """The settings are valid; AWS itself is not asked (credentials are checked when the first session starts)."""
    settings = load_settings(config)
    region = settings.region or "boto3's default region"
    return True, f"code interpreter {settings.code_interpreter_id} in {region}"


def create_backend(config: Config) -> AgentCoreBackend:
    """The ``agentcore`` backend for a config (validates ``sandbox.agentcore``)."""
    return AgentCoreBackend(load_settings(config), run_timeout_s=config.limits.timeout_s)


async def _answer_all(run_id: str, calls: list[Call], call_tool: ToolCallHandler) -> list[dict[str, Any]]:
    """Run one step's calls concurrently; the results go back in the next step, in call order."""
    replies: list[dict[str, Any]] = [{} for _ in calls]

    async def answer(index: int, call: Call) -> None:
        replies[index] = (await answer_call(run_id, call, call_tool))[0]

    try:
        async with anyio.create_task_group() as group:
            for index, call in enumerate(calls):
                group.start_soon(answer, index, call)
    except BaseExceptionGroup as group_error:  # a limit (RunLimitExceeded) ends the run: raise it as itself
        raise_from_group(group_error)
    return replies


def _excerpt(output: ToolOutput, limit: int = 500) -> str:
    text = (output.stderr or output.text or output.stdout).strip()
    return text[-limit:] if text else "no output"

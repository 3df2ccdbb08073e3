"""Questions to a 2026-07-28 client: the multi-round-trip ``tools/call`` (``InputRequiredResult``).

The 2026-07-28 protocol has no server→client requests. A server that needs input answers the ``tools/call`` with an
``InputRequiredResult`` (the questions, and an opaque ``requestState``); the client answers them and sends the same
``tools/call`` again with ``inputResponses`` and the ``requestState``. A program cannot be paused between two
requests, so the run goes on in the background (an ``InputExchange``): each ``execute_program`` request of the
exchange waits until the run needs answers (→ ``InputRequiredResult``) or ends (→ its result). The ``requestState``
is an unguessable token naming the exchange, bound to the caller's identity and to the call's arguments.

Limits: a client that never retries leaves its questions unanswered: each fails after ``limits.input_timeout_s``
(the downstream server gets an error answer, an approval is denied) and the run goes on to its end; its result is
kept for ``limits.input_timeout_s`` more, then dropped. The exchange lives in this server process: a retry must
reach the same instance (sticky routing when scaled out). Progress and log notifications go out while a request
of the exchange is waiting, not between requests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import mcp_types as types
from anyio.abc import TaskGroup

from ptc_mcp.bridge import CallRecord
from ptc_mcp.errors import PtcError
from ptc_mcp.interaction import SamplingAnswer
from ptc_mcp.results import RunResult, error_result
from ptc_mcp.sandboxes.base import StreamName

if TYPE_CHECKING:
    from ptc_mcp.executor import RunEvents

__all__ = ["InputExchange", "InputExchanges", "arguments_digest"]

logger = logging.getLogger(__name__)


class InputUnanswered(PtcError):
    """The client answered a question with an error, or with the wrong kind of answer."""


@dataclass(eq=False)
class _Question:
    request: types.InputRequest
    answered: anyio.Event = field(default_factory=anyio.Event)
    answer: types.InputResponse | None = None


def arguments_digest(name: str, arguments: Mapping[str, Any] | None) -> str:
    """What binds a retry to its first request: the tool and its arguments."""
    text = json.dumps([name, arguments or {}], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class InputExchange:
    """One run whose questions go out as ``InputRequiredResult``s; it is the run's ``ClientChannel``, and its
    ``RunEvents``, passed on to ``watcher`` (the reporter of the request that waits now, if any)."""

    def __init__(self, *, owner: str | None, digest: str, can_elicit: bool, can_sample: bool) -> None:
        self.state = "ptcx_" + secrets.token_urlsafe(32)
        self.owner = owner
        self.digest = digest
        self.can_elicit = can_elicit
        self.can_sample = can_sample
        self.peer: object = self
        self.result: RunResult | None = None
        self.scope = anyio.CancelScope()
        self._questions: dict[str, _Question] = {}
        self._asked = 0
        self._changed = anyio.Event()
        self.watcher: RunEvents | None = None

    # -- RunEvents -------------------------------------------------------------------------------------------

    def output(self, stream: StreamName, text: str) -> None:
        if self.watcher is not None:
            self.watcher.output(stream, text)

    def call_started(self, tool: str) -> None:
        if self.watcher is not None:
            self.watcher.call_started(tool)

    def call_finished(self, record: CallRecord) -> None:
        if self.watcher is not None:
            self.watcher.call_finished(record)

    # -- ClientChannel ---------------------------------------------------------------------------------------

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult:
        answer = await self._ask(types.ElicitRequest(params=params))
        if not isinstance(answer, types.ElicitResult):
            raise InputUnanswered("the answer to an elicitation request was not an elicitation result")
        return answer

    async def sample(self, params: types.CreateMessageRequestParams) -> SamplingAnswer:
        answer = await self._ask(types.CreateMessageRequest(params=params))
        if not isinstance(answer, types.CreateMessageResult | types.CreateMessageResultWithTools):
            raise InputUnanswered("the answer to a sampling request was not a sampling result")
        return answer

    # -- the requests of the exchange ------------------------------------------------------------------------

    def answer(self, responses: Mapping[str, types.InputResponse] | None) -> None:
        """Deliver the answers a retry carries (answers to questions nobody waits for any more are ignored)."""
        for key, response in (responses or {}).items():
            question = self._questions.get(key)
            if question is not None and not question.answered.is_set():
                question.answer = response
                question.answered.set()

    async def next(self) -> RunResult | types.InputRequiredResult:
        """Wait until the run ends (its result) or has questions nobody answered yet (``InputRequiredResult``)."""
        while True:
            if self.result is not None:
                return self.result
            waiting = {key: q.request for key, q in self._questions.items() if not q.answered.is_set()}
            if waiting:
                return types.InputRequiredResult(input_requests=waiting, request_state=self.state)
            await self._changed.wait()

    def finished(self, result: RunResult) -> None:
        self.result = result
        self._signal()

    async def _ask(self, request: types.InputRequest) -> types.InputResponse:
        self._asked += 1
        key = f"q{self._asked}"
        question = _Question(request)
        self._questions[key] = question
        self._signal()
        try:
            await question.answered.wait()
        finally:
            del self._questions[key]
        assert question.answer is not None
        return question.answer

    def _signal(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


RunProgram = Callable[[InputExchange], Awaitable[RunResult]]


class InputExchanges:
    """The open exchanges of this server, by ``requestState``; an async context manager that owns their runs."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._open: dict[str, InputExchange] = {}
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            self._open.clear()

    def __len__(self) -> int:
        return len(self._open)

    def start(self, exchange: InputExchange, run: RunProgram) -> None:
        """Run ``run(exchange)`` in the background; ``exchange`` is found by its state until it is collected."""
        if self._tg is None:
            raise RuntimeError("InputExchanges is not open")
        self._open[exchange.state] = exchange
        self._tg.start_soon(self._drive, exchange, run)

    def find(self, state: str, owner: str | None, digest: str) -> InputExchange | None:
        """The exchange a retry continues, if it is open, is the caller's, and carries the same arguments."""
        exchange = self._open.get(state)
        if exchange is None or exchange.owner != owner or exchange.digest != digest:
            return None
        return exchange

    def close(self, exchange: InputExchange) -> None:
        """Forget the exchange (its result was delivered, or its client went away: then the run is cancelled)."""
        self._open.pop(exchange.state, None)
        exchange.scope.cancel()

    async def _drive(self, exchange: InputExchange, run: RunProgram) -> None:
        with exchange.scope:
            try:
                result = await run(exchange)
            except Exception:  # a host bug: the waiting request must still get an answer
                logger.exception("a run of an input exchange failed")
                result = error_result("sandbox_failure", "the run failed on the host; see the server's log")
            exchange.finished(result)
            await anyio.sleep(self.keep_s)  # a result nobody collects is dropped after this
        self._open.pop(exchange.state, None)

"""A run's way back to its client: what downstream servers ask of the user, and approvals.

A downstream server may ask, in the middle of a nested call, for input from the user (``elicitation/create``) or
for a completion from the client's model (``sampling/createMessage``). Only the client of the run that made the
call can answer; ``RunInteraction`` is that route for one run, and ``CURRENT_INTERACTION`` names it for the code
of one nested call (the bridge sets it around the downstream call, so tasks started inside the call see it).

Attribution on a shared downstream connection (one connection serves the nested calls of every run):

- On a 2026-07-28 downstream connection a question comes back as the *result* of the nested call
  (``InputRequiredResult``), handled in the task of that call: it is attributed exactly, through
  ``CURRENT_INTERACTION``.
- On a handshake-era connection it is a server→client request that names no client request (the MCP client SDK
  gives a callback no related-request context, and stdio carries none). It goes to the run whose client is the
  only one with nested calls to that server in flight; with calls of several clients in flight it is answered with
  an error (``ambiguous_question``): a question must never reach a person who did not start the call.

Every wait for an answer is bounded by ``timeout_s`` (``limits.input_timeout_s``); the run's own time limit keeps
counting meanwhile. A client without the capability makes the question fail at once with an error answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import anyio
import mcp_types as types

from ptc_mcp.output import safe_text

__all__ = [
    "CURRENT_INTERACTION",
    "MAX_WAITING_QUESTIONS",
    "ClientChannel",
    "RunInteraction",
    "SamplingAnswer",
    "refusal",
]

MAX_WAITING_QUESTIONS = 8
"""Questions of one run that may wait for the client at once; more are refused at once (a server that asks in a
loop cannot pile up dialogs, or an unbounded ``InputRequiredResult``)."""

SamplingAnswer = types.CreateMessageResult | types.CreateMessageResultWithTools
_T = TypeVar("_T")


class ClientChannel(Protocol):
    """What the client of one ``execute_program`` request can answer, and how to ask it."""

    can_elicit: bool
    can_sample: bool
    peer: object
    """The client (its connection): runs with the same peer may share a downstream question."""

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult: ...

    async def sample(self, params: types.CreateMessageRequestParams) -> SamplingAnswer: ...


def refusal(message: str) -> types.ErrorData:
    """The error answer a downstream server gets when its question cannot be put to anyone."""
    return types.ErrorData(code=types.INVALID_REQUEST, message=f"ptc-mcp: {message}")


@dataclass(eq=False)
class RunInteraction:
    """One run's route to its client; ``channel`` is ``None`` for faces that have no client to ask.

    ``close()`` (the executor calls it when the run ends) withdraws the questions still waiting: a question lives
    no longer than its run, even when the downstream server keeps waiting for an answer.
    """

    channel: ClientChannel | None
    timeout_s: float
    session: str = ""
    run_id: str = ""
    closed: bool = False
    _waiting: set[anyio.CancelScope] = field(default_factory=set)

    @property
    def peer(self) -> object:
        return self.channel.peer if self.channel is not None else self

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        """Ask the person; an error answer when the client cannot, fails, or takes longer than ``timeout_s``."""
        channel = self.channel
        if channel is None or not channel.can_elicit:
            return refusal("the client of this run does not support elicitation")
        return await self._bounded(lambda: channel.elicit(params), "elicitation")

    async def sample(self, params: types.CreateMessageRequestParams) -> SamplingAnswer | types.ErrorData:
        """Ask the client's model; an error answer when the client cannot, fails, or is too slow."""
        channel = self.channel
        if channel is None or not channel.can_sample:
            return refusal("the client of this run does not support sampling")
        return await self._bounded(lambda: channel.sample(params), "sampling")

    def close(self) -> None:
        """The run ended: withdraw its waiting questions, refuse new ones."""
        self.closed = True
        for scope in self._waiting:
            scope.cancel()

    async def _bounded(self, ask: Callable[[], Awaitable[_T]], what: str) -> _T | types.ErrorData:
        if self.closed:
            return refusal(f"the run that made this call has ended; the {what} request is not asked")
        if len(self._waiting) >= MAX_WAITING_QUESTIONS:
            return refusal(f"{MAX_WAITING_QUESTIONS} questions of this run already wait for an answer")
        scope = anyio.CancelScope(deadline=anyio.current_time() + self.timeout_s)
        self._waiting.add(scope)
        try:
            with scope:
                return await ask()
        except Exception as exc:  # the client answered with an error, or went away
            return refusal(f"the client did not answer the {what} request: {safe_text(str(exc))[:200]}")
        finally:
            self._waiting.discard(scope)
        if self.closed:
            return refusal(f"the run that made this call ended before the {what} request was answered")
        return refusal(f"no answer to the {what} request within {self.timeout_s:g} s")


CURRENT_INTERACTION: ContextVar[RunInteraction | None] = ContextVar("ptc_mcp_interaction", default=None)
"""The interaction of the nested call the current task works for (``None`` outside nested calls)."""

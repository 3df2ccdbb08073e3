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

from collections.abc import Awaitable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, TypeVar

import anyio
import mcp_types as types

from ptc_mcp.output import safe_text

__all__ = [
    "CURRENT_INTERACTION",
    "ClientChannel",
    "RunInteraction",
    "SamplingAnswer",
    "refusal",
]

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


@dataclass
class RunInteraction:
    """One run's route to its client; ``channel`` is ``None`` for faces that have no client to ask."""

    channel: ClientChannel | None
    timeout_s: float
    session: str = ""
    run_id: str = ""

    @property
    def peer(self) -> object:
        return self.channel.peer if self.channel is not None else self

    @property
    def can_elicit(self) -> bool:
        return self.channel is not None and self.channel.can_elicit

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        """Ask the person; an error answer when the client cannot, fails, or takes longer than ``timeout_s``."""
        if self.channel is None or not self.channel.can_elicit:
            return refusal("the client of this run does not support elicitation")
        return await self._bounded(self.channel.elicit(params), "elicitation")

    async def sample(self, params: types.CreateMessageRequestParams) -> SamplingAnswer | types.ErrorData:
        """Ask the client's model; an error answer when the client cannot, fails, or is too slow."""
        if self.channel is None or not self.channel.can_sample:
            return refusal("the client of this run does not support sampling")
        return await self._bounded(self.channel.sample(params), "sampling")

    async def _bounded(self, answer: Awaitable[_T], what: str) -> _T | types.ErrorData:
        try:
            with anyio.fail_after(self.timeout_s):
                return await answer
        except TimeoutError:
            return refusal(f"no answer to the {what} request within {self.timeout_s:g} s")
        except Exception as exc:  # the client answered with an error, or went away
            return refusal(f"the client did not answer the {what} request: {safe_text(str(exc))[:200]}")


CURRENT_INTERACTION: ContextVar[RunInteraction | None] = ContextVar("ptc_mcp_interaction", default=None)
"""The interaction of the nested call the current task works for (``None`` outside nested calls)."""

"""The session map protocol: what every shared store (SQLite, Redis, DynamoDB) implements.

A record per session, keyed by the SHA-256 of its handle (handles and owners are never stored in the clear). A run
holds the session's *lease*; each ``acquire`` bumps the session's fencing counter, and ``renew``/``release`` succeed
only for the holder with the current counter, so a holder that lost its lease cannot write over its successor.
Every store counts a *takeover* (a lease that was never released: its instance died or lost it mid-run) as a change
of the session, like a ``release``: the version goes up, so no instance trusts a handle on the interpreter that
it cached before the dead holder's run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from ptc_mcp.errors import SandboxFailure

__all__ = ["Lease", "LeaseLost", "SessionMap", "SessionMapError", "SharedRecord", "digest"]


def digest(value: str | None) -> str:
    """How handles and owners are stored: never in the clear."""
    return hashlib.sha256((value or "").encode("utf-8", "surrogatepass")).hexdigest()


class SessionMapError(SandboxFailure):
    """The store did not answer or refused (unreachable, throttled beyond the retries, misconfigured)."""


class LeaseLost(SandboxFailure):
    """Another holder has the session's lease now: this instance must not drive its interpreter any more."""


@dataclass(frozen=True)
class SharedRecord:
    """One session as the map knows it."""

    owner: str
    """SHA-256 of the owner's identity (``digest(None)`` when there was none)."""
    state: dict[str, Any] | None
    """The backend's ``session_state()``; ``None``: no interpreter yet (the next run starts one)."""
    version: int
    """Bumped by every ``release`` and every takeover: an instance whose cached interpreter is older re-attaches."""
    last_used: float


@dataclass(frozen=True)
class Lease:
    """A taken lease: the record as it was taken, and the fencing counter that ``renew``/``release`` must show."""

    record: SharedRecord
    fence: int


class SessionMap(Protocol):
    """Where instances find sessions. Every method is safe to call from any instance at any time.

    Stores raise ``SessionMapError`` for their own failures (after their retries), nothing else.
    """

    async def create(self, handle: str, owner: str | None) -> None: ...

    async def lookup(self, handle: str) -> SharedRecord | None: ...

    async def acquire(self, handle: str, holder: str, lease_s: float) -> Lease | None:
        """Take the lease for ``lease_s``; ``None`` while another holder has it (or the session is gone)."""
        ...

    async def renew(self, handle: str, holder: str, fence: int, lease_s: float) -> bool:
        """Extend the lease to ``lease_s`` from now; ``False`` when it is not this holder's any more."""
        ...

    async def release(self, handle: str, holder: str, fence: int, state: dict[str, Any] | None) -> int:
        """Store ``state``, end the lease, return the new version; -1 when the lease was not ours or it is gone."""
        ...

    async def delete(self, handle: str) -> None: ...

    async def reap_idle(self, idle_s: float) -> list[tuple[str, dict[str, Any] | None]]:
        """Remove sessions unused for ``idle_s`` and not leased; returns their (key, state) to stop them."""
        ...

    async def aclose(self) -> None: ...

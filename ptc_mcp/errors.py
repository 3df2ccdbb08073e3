"""The exceptions and error types of ptc-mcp.

Exception tree (everything the host side raises derives from ``PtcError``)::

    PtcError
    ├── ConfigError            bad config file: fails at start-up, names the key
    ├── BusyError              no run slot free and the queue is full
    ├── SessionClosedError     the session a call names was closed (evicted, idle); says why
    ├── SandboxUnavailableError no backend can run here (says what to install)
    ├── SandboxFailure         the sandbox died or spoke nonsense; the session is discarded
    ├── RunLimitExceeded       a run crossed a limit that ends it; the session is discarded
    └── ToolCallError          a nested tool call failed; carries an ``ErrorType`` for the program

Failures inside a program are never exceptions on the host: they are a ``RunResult`` whose ``error_type`` is
one of ``ErrorType`` (the error contract of docs/security.md).
"""

from __future__ import annotations

from typing import Literal, NoReturn

ErrorType = Literal[
    "timeout",
    "memory_limit",
    "process_limit",
    "output_limit",
    "disk_limit",
    "tool_call_limit",
    "tool_denied",
    "tool_error",
    "invalid_input",
    "busy",
    "sandbox_failure",
    "program_error",
    "cancelled",
]


class PtcError(Exception):
    """Base class of every error ptc-mcp raises on the host side."""


class ConfigError(PtcError):
    """The config file is missing, malformed, or has a bad value (the message names the key)."""


class BusyError(PtcError):
    """Every run slot is taken and the wait queue is full."""


class SessionClosedError(PtcError):
    """The session a call continues was closed by the server; the message says why (e.g. to make room)."""


class SandboxUnavailableError(PtcError):
    """No sandbox backend that meets the config can run on this machine."""


class SandboxFailure(PtcError):
    """The sandbox died, could not start, or broke the host↔runtime protocol.

    ``error_type`` lets a backend say more when it knows (an out-of-memory kill is ``memory_limit``).
    """

    def __init__(self, message: str, error_type: ErrorType = "sandbox_failure") -> None:
        super().__init__(message)
        self.error_type: ErrorType = error_type


class ToolCallError(PtcError):
    """A nested tool call failed; ``error_type`` tells the program which kind of failure it was.

    ``outcome`` is what the audit trail records (``error_type`` unless more is known: ``timeout``).
    """

    def __init__(self, error_type: ErrorType, message: str, *, outcome: str | None = None) -> None:
        super().__init__(message)
        self.error_type: ErrorType = error_type
        self.message = message
        self.outcome = outcome or error_type


class RunLimitExceeded(PtcError):
    """A run crossed a limit that ends it (output flood, tool-call budget, memory); the sandbox is discarded."""

    def __init__(self, error_type: ErrorType, message: str) -> None:
        super().__init__(message)
        self.error_type: ErrorType = error_type
        self.message = message


def raise_from_group(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the first ``PtcError`` in a task group's exception group (anyio always wraps), else the group.

    Callers of a backend catch ``SandboxFailure`` and ``RunLimitExceeded``, never exception groups.
    """
    failure = _first_ptc_error(group)
    if failure is None:
        raise group
    raise failure from None


def _first_ptc_error(group: BaseExceptionGroup[BaseException]) -> PtcError | None:
    for exc in group.exceptions:
        found = _first_ptc_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if isinstance(found, PtcError):
            return found
    return None

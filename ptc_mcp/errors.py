"""The exceptions and error types of ptc-mcp.

Exception tree: every exception ptc-mcp raises derives from ``PtcError``. Most live here; those that carry one
concern's data live with it (the module in brackets) and still derive from a class of this tree::

    PtcError
    ├── ConfigError            bad config file: fails at start-up, names the key
    ├── BusyError              no run slot free and the queue is full
    ├── SessionClosedError     the session a call names was closed (evicted, idle); says why
    ├── SandboxUnavailableError no backend can run here (says what to install)
    ├── SandboxFailure         the sandbox died or spoke nonsense; the session is discarded
    │   ├── ProtocolError      the runtime sent something that is not a protocol message [sandboxes.protocol]
    │   ├── SessionMapError    the shared session map did not answer or refused [remote.session_map]
    │   └── LeaseLost          another instance holds the session's lease now [remote.session_map]
    ├── RunLimitExceeded       a run crossed a limit that ends it; the session is discarded
    ├── ToolCallError          a nested tool call failed; carries an ``ErrorType`` for the program
    ├── UnknownToolError       no tool has that name; also a ``LookupError`` [catalog.model]
    ├── ArgumentError          arguments the tool's ``inputSchema`` rejects; also a ``TypeError``, as Python raises
    │                          for a bad call, and what the program sees [catalog.validation]
    ├── LoginRequired          a downstream server needs a person to log in [downstream.oauth]
    ├── InputUnanswered        the client answered a question with the wrong kind of answer [input_exchange]
    ├── ApiError               the error the proxy answers an HTTP request with [proxy.errors]
    └── EmulatorError          an emulated AWS service's error answer (tests and bench only) [emulators]:
                               ConverseError (Bedrock), ServiceError and KernelError (AgentCore)

Private exceptions that never leave their module (``emulators.dynamodb._Refused``) stay outside it.
tests/test_errors.py checks the tree against the source.

Failures inside a program are never exceptions on the host: they are a ``RunResult`` whose ``error_type`` is
one of ``ErrorType`` (the error contract of docs/security.md).

Two helpers every module uses: ``first_in_group`` / ``raise_from_group`` look through the exception groups task
groups wrap failures in, and ``validation_problems`` turns a pydantic ``ValidationError`` into one line that names
each bad key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NoReturn, TypeVar

if TYPE_CHECKING:
    from pydantic import ValidationError

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


class EmulatorError(PtcError):
    """An error of a local emulator of an AWS service, answered as that service's error (tests and bench only)."""


_E = TypeVar("_E", bound=BaseException)


def first_in_group(group: BaseExceptionGroup[BaseException], kind: type[_E]) -> _E | None:
    """The first exception of ``kind`` in ``group``, depth first through nested groups (anyio always wraps)."""
    for exc in group.exceptions:
        found = first_in_group(exc, kind) if isinstance(exc, BaseExceptionGroup) else exc
        if isinstance(found, kind):
            return found
    return None


def raise_from_group(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the first ``PtcError`` in a task group's exception group, else the group.

    Callers of a backend catch ``SandboxFailure`` and ``RunLimitExceeded``, never exception groups.
    """
    failure = first_in_group(group, PtcError)
    if failure is None:
        raise group
    raise failure from None


def validation_problems(
    exc: ValidationError, *, under: str = "", whole: str = "<root>", limit: int | None = None
) -> str:
    """Each error of a pydantic ``ValidationError`` as ``key.path: message``, joined by ``; ``.

    ``under`` prefixes every path (``sandbox.docker``); ``whole`` names a problem with the value itself; ``limit``
    keeps the first errors only (for values from the untrusted side).
    """
    problems = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
        path = ".".join(part for part in (under, where) if part) or whole
        problems.append(f"{path}: {error['msg']}")
    return "; ".join(problems)

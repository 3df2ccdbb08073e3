"""A backend kind for tests of ``create_backend``: its probe says it isolates, the backend it makes does not.

Registered in ``MODULES`` (and ``AUTO_ORDER``) by the tests that use it; ``DROPPED`` collects every backend of this
kind that was closed, so a test can see that ``create_backend`` closed the one it did not use.
"""

from __future__ import annotations

from ptc_mcp.config import Config
from ptc_mcp.sandboxes import sandbox_limits
from ptc_mcp.sandboxes.process.backend import ProcessBackend

KIND = "unisolated-test"
CLOSED: list[UnisolatedBackend] = []


class UnisolatedBackend(ProcessBackend):
    """A plain child process (no bubblewrap) with a warm pool: resources a dropped backend must give back."""

    kind = KIND

    async def aclose(self) -> None:
        await super().aclose()
        CLOSED.append(self)


def probe(config: Config) -> tuple[bool, str]:
    return True, "claims to isolate"


def create_backend(config: Config) -> UnisolatedBackend:
    return UnisolatedBackend(sandbox_limits(config), use_bubblewrap=False, warm_pool=config.sandbox.warm_pool)

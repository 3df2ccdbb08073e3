"""The ``docker`` backend: one container per session, the runtime speaking over the attached socket or, on a local
engine, over the direct channel.

``backend.py`` (the backend and its sessions), ``settings.py`` (``sandbox.docker`` parsed), ``launch.py``
(starting a container and the runtime handshake), ``stream.py`` (Docker's multiplexed attach stream),
``channel.py`` (the direct channel: the protocol and the raw fd 1/2 output on a unix socket of their own) and
``image.py`` (building the sandbox image locally). Warm containers come from the shared
``ptc_mcp.sandboxes.warm_pool``. Needs the ``docker`` extra.
"""

from ptc_mcp.sandboxes.docker.backend import DockerBackend, create_backend, probe

__all__ = ["DockerBackend", "create_backend", "probe"]

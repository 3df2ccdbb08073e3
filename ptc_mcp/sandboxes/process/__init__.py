"""The ``process`` backend: the runtime as a local child process, isolated by bubblewrap when present.

``backend.py`` (sessions, warm interpreters), ``isolation.py`` (how a child is launched: bubblewrap or bare,
rlimits), ``bubblewrap.py`` (the bwrap command line and its probe), ``limits.py`` (rlimits), and ``srt.py`` (the
``srt`` backend: the same machinery under Anthropic's sandbox-runtime).
"""

from ptc_mcp.sandboxes.process.backend import ProcessBackend, ProcessSession, create_backend, probe

__all__ = ["ProcessBackend", "ProcessSession", "create_backend", "probe"]

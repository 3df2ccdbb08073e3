"""One emulated code-interpreter session: a persistent Python process in ptc-mcp's ``process`` sandbox.

The interpreter is the ptc-mcp runtime started by ``ProcessBackend`` (bubblewrap when available) with an empty
tool catalog, used as a plain persistent Python: each ``executeCode`` is one program in the same namespace, so
state survives between calls as it does in AgentCore. File and command tools run as small helper programs in
the same process, so they see exactly the files and privileges the code sees.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ptc_mcp.errors import EmulatorError, ToolCallError
from ptc_mcp.sandboxes.base import RunRequest, StreamName
from ptc_mcp.sandboxes.process.backend import ProcessBackend, ProcessSession

__all__ = ["ExecutionOutput", "Kernel", "KernelError"]

OUTPUT_CAP_BYTES = 16 * 1024 * 1024
_HIDDEN = ("tools", "call_tool", "servers", "ToolError", "Binary", "asyncio")

# Runs once per session inside the sandbox (standard library only): hides the runtime's program API so the
# namespace looks like a fresh interpreter's, and installs the file/command helpers under one private name.
_KERNEL_SETUP = """
for _name in __HIDDEN__:
    globals().pop(_name, None)
del _name

def _ptc_emulator_helpers():
    import base64, mimetypes, os, shutil, subprocess, types

    def _uri(path):
        return "file://" + os.path.abspath(path)

    def write_files(items):
        written = []
        for item in items:
            path = item["path"]
            folder = os.path.dirname(path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            if item.get("blob") is not None:
                with open(path, "wb") as handle:
                    handle.write(base64.b64decode(item["blob"]))
            else:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(item.get("text") or "")
            written.append(path)
        return written

    def read_files(paths):
        found = []
        for path in paths:
            mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
            with open(path, "rb") as handle:
                data = handle.read()
            try:
                found.append({"type": "text", "uri": _uri(path), "mimeType": mime if mime.startswith("text/")
                              else "text/plain", "text": data.decode("utf-8")})
            except UnicodeDecodeError:
                found.append({"type": "blob", "uri": _uri(path), "mimeType": mime,
                              "blob": base64.b64encode(data).decode("ascii")})
        return found

    def list_files(directory):
        entries = []
        for entry in sorted(os.scandir(directory or "."), key=lambda e: e.name):
            is_dir = entry.is_dir(follow_symlinks=False)
            entries.append({"name": entry.name, "uri": _uri(entry.path), "isDirectory": is_dir,
                            "size": 0 if is_dir else entry.stat(follow_symlinks=False).st_size,
                            "mimeType": None if is_dir else mimetypes.guess_type(entry.name)[0]})
        return entries

    def remove_files(paths):
        for path in paths:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        return list(paths)

    def run_command(command, timeout):
        try:
            done = subprocess.run(command, shell=True, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return {"stdout": (exc.stdout or b"").decode("utf-8", "replace"),
                    "stderr": (exc.stderr or b"").decode("utf-8", "replace") + "command timed out",
                    "exitCode": 124}
        return {"stdout": done.stdout.decode("utf-8", "replace"), "stderr": done.stderr.decode("utf-8", "replace"),
                "exitCode": done.returncode}

    def clear_context(namespace):
        for name in list(namespace):
            if name not in ("__name__", "__builtins__", "__ptc_emulator__"):
                del namespace[name]

    return types.SimpleNamespace(write_files=write_files, read_files=read_files, list_files=list_files,
                                 remove_files=remove_files, run_command=run_command, clear_context=clear_context)

__ptc_emulator__ = _ptc_emulator_helpers()
del _ptc_emulator_helpers
""".replace("__HIDDEN__", repr(_HIDDEN))


class KernelError(EmulatorError):
    """A helper program failed inside the session (a missing file, say): reported as a tool error result."""


@dataclass
class ExecutionOutput:
    """What one program printed, and how it ended."""

    stdout: str = ""
    stderr: str = ""
    ok: bool = True
    result: Any = None
    seconds: float = 0.0


@dataclass
class _Collector:
    chunks: dict[str, list[str]] = field(default_factory=lambda: {"stdout": [], "stderr": []})
    size: int = 0

    def write(self, stream: StreamName, text: str) -> None:
        if self.size < OUTPUT_CAP_BYTES:
            self.chunks[stream].append(text)
            self.size += len(text)


async def _no_tools(name: str, arguments: dict[str, Any]) -> Any:
    raise ToolCallError("tool_denied", "the AgentCore emulator's interpreter has no ptc-mcp tools")


class Kernel:
    """A persistent Python process in the ``process`` sandbox, driven one program at a time."""

    def __init__(self, session: ProcessSession) -> None:
        self._session = session
        self._runs = itertools.count(1)

    @classmethod
    async def start(cls, backend: ProcessBackend) -> Kernel:
        kernel = cls(await backend.start_session())
        try:
            setup = await kernel._run(_KERNEL_SETUP)
            if not setup.ok:
                raise RuntimeError(f"emulated interpreter setup failed: {setup.stderr}")
        except BaseException:
            await kernel.aclose()
            raise
        return kernel

    @property
    def alive(self) -> bool:
        return self._session.alive

    @property
    def process(self) -> ProcessSession:
        """The sandboxed interpreter process (for tests that check what a session leaves behind)."""
        return self._session

    async def _run(self, code: str) -> ExecutionOutput:
        collector = _Collector()
        request = RunRequest(
            run_id=f"emulator-{next(self._runs)}",
            code=code,
            catalog={"servers": []},
            catalog_version="emulator",  # sent with the first (setup) program only
            max_output_bytes=OUTPUT_CAP_BYTES,
        )
        started = time.monotonic()
        report = await self._session.run(request, _no_tools, collector)
        output = ExecutionOutput(
            stdout="".join(collector.chunks["stdout"]),
            stderr="".join(collector.chunks["stderr"]),
            ok=report.ok,
            result=report.result,
            seconds=time.monotonic() - started,
        )
        if report.ok and report.result_repr is not None:
            output.stdout += report.result_repr + "\n"  # like a notebook cell showing its last value
        if not report.ok:
            output.stderr += report.traceback or f"{report.exc_type}: {report.message}\n"
        return output

    async def execute_code(self, code: str, *, clear_context: bool = False) -> ExecutionOutput:
        if clear_context:
            await self._helper("clear_context", "globals()")
        return await self._run(code)

    async def _helper(self, name: str, *arguments: str) -> Any:
        output = await self._run(f"__ptc_emulator__.{name}({', '.join(arguments)})")
        if not output.ok:
            raise KernelError(output.stderr.strip().splitlines()[-1] if output.stderr.strip() else "failed")
        return output.result

    async def execute_command(self, command: str, timeout_s: float) -> dict[str, Any]:
        result: dict[str, Any] = await self._helper("run_command", _literal(command), repr(timeout_s))
        return result

    async def write_files(self, items: list[dict[str, Any]]) -> list[str]:
        wire = [{"path": item["path"], "text": item.get("text"), "blob": _b64(item.get("blob"))} for item in items]
        written: list[str] = await self._helper("write_files", _literal(wire))
        return written

    async def read_files(self, paths: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._helper("read_files", _literal(paths))
        return found

    async def list_files(self, directory: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = await self._helper("list_files", _literal(directory))
        return entries

    async def remove_files(self, paths: list[str]) -> list[str]:
        removed: list[str] = await self._helper("remove_files", _literal(paths))
        return removed

    async def aclose(self) -> None:
        await self._session.aclose()


def _literal(value: Any) -> str:
    """A Python expression for a JSON value (JSON text is parsed, never evaluated as code)."""
    return f"__import__('json').loads({json.dumps(json.dumps(value))})"


def _b64(blob: bytes | str | None) -> str | None:
    if blob is None:
        return None
    if isinstance(blob, str):
        return blob
    return base64.b64encode(blob).decode("ascii")

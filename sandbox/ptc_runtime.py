"""The ptc-mcp runtime: runs *inside* the sandbox.

Standard library only, Python 3.9+, one file: the host sends it over stdin at start-up (see docs/protocol.md),
so any interpreter with ``python3`` can run it. It executes the model's programs in one persistent namespace,
binds each downstream server as a namespace of ``async`` functions, and turns every tool call into a protocol
message to the host, which owns policy, budgets and the real connections.
"""

import ast
import asyncio
import base64
import collections
import contextlib
import difflib
import errno
import io
import json
import linecache
import os
import queue
import select
import socket
import sys
import threading
import traceback
import warnings

# -- the protocol ---------------------------------------------------------------------------------------------------
# Mirrors SHARED_WITH_RUNTIME in ptc_mcp/sandboxes/protocol.py, the protocol's one home on the host (read it for what
# each value means); tests/sandboxes/test_protocol_constants.py pins every value here to the host's. Change both.
RUN, RESULT, CANCEL = "run", "result", "cancel"  # message types, host -> runtime
READY, CALL, OUTPUT, DONE = "ready", "call", "output", "done"  # message types, runtime -> host
INVALID_ARGUMENTS = "invalid_arguments"  # a result error raised as TypeError
SEARCH_TOOL, DESCRIBE_TOOL = "@search", "@describe"
DEFAULT_SEARCH_LIMIT = 5
MAX_QUERY_CHARS = 1000  # the host refuses longer tools.search queries (and describe names past 512)
BINARY_MARKER = "__ptc_binary__"
FLOOD_FACTOR = 8  # output past this many times the cap ends the run as output_limit
DEFAULT_MAX_OUTPUT_BYTES = 32768
RESULT_NESTING = 90  # results nested deeper travel as repr only (the host refuses more than 100 levels)
END_MARK = b"\x00ptc-run-end:"  # + run id + NUL on fd 2 just before done: the real fds' output of the run has passed
RUNTIME_MODULE = "__ptc_runtime__"  # the bootstrap's __name__ for this file: start the stream driver
STEP_WAIT_S = 10.0  # stepped mode: longest one step waits for a busy program
OUTPUT_FLUSH_S = 0.5  # stepped mode: output waits at most this long for the step that carries it
CHANNEL_ENV = "PTC_CHANNEL"  # a unix socket to speak the protocol over instead of stdin/stdout (docker, local engine)

PROGRAM_FILE = "<program>"
AWAIT_HINT = "tool functions are async: write `await {name}(...)` (or gather several with asyncio.gather)"
RESERVED = ("tools", "call_tool", "servers", "ToolError", "Binary", "asyncio")


class ToolError(Exception):
    """A tool call failed: the downstream tool reported an error, the policy refused it, or a limit was hit."""

    def __init__(self, tool, message, error_type="tool_error"):
        Exception.__init__(self, message)
        self.tool = tool
        self.message = message
        self.error_type = error_type

    def __str__(self):
        return f"{self.tool}: {self.message}"


class OutputLimitExceeded(BaseException):
    """The program kept printing far past the output cap (BaseException so `except Exception` can't hide it)."""


class Binary:
    """Binary content from a tool (an image, a blob): ``.data`` is bytes, ``.mime_type`` says what it is."""

    def __init__(self, data, mime_type):
        self.data = data
        self.mime_type = mime_type

    def __repr__(self):
        return f"Binary(mime_type={self.mime_type!r}, {len(self.data)} bytes)"


def _from_wire(value):
    if isinstance(value, dict):
        if len(value) == 1 and BINARY_MARKER in value:
            blob = value[BINARY_MARKER]
            return Binary(base64.b64decode(blob.get("data", "")), blob.get("mime_type", "application/octet-stream"))
        return {key: _from_wire(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_wire(item) for item in value]
    return value


def _encode(value):
    """JSON text as both drivers send it (ASCII: any byte stream carries it; what JSON cannot hold goes as repr)."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=repr)


def _ready_message():
    return {"type": READY, "python": ".".join(str(part) for part in sys.version_info[:3]), "pid": os.getpid()}


class Protocol:
    """The stream driver's channel to the host (JSON lines); writes are serialized across threads.

    A runtime's channel has ``send(message)`` (runtime -> host) and ``received(message)``, which ``Runtime.dispatch``
    calls with each host message it is about to act on; ``StepDriver`` is the stepped driver's channel."""

    def __init__(self, out_file):
        self._out = out_file
        self._lock = threading.Lock()

    def send(self, message):
        data = (_encode(message) + "\n").encode("ascii")
        with self._lock:
            self._out.write(data)
            self._out.flush()

    def received(self, message):
        pass


class _TextStream(io.TextIOBase):
    """What the program finds in sys.stdout/sys.stderr: a UTF-8 text stream that is not a terminal."""

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return False


class Capture(_TextStream):
    """Stands in for sys.stdout/sys.stderr: sends what the program prints to the host, capped."""

    def __init__(self, runtime, stream):
        _TextStream.__init__(self)
        self._runtime = runtime
        self._stream = stream
        self._buffer = []
        self._size = 0

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= 4096 or "\n" in text:
            self.flush()
        return len(text)

    def flush(self):
        if self._buffer:
            text = "".join(self._buffer)
            self._buffer = []
            self._size = 0
            self._runtime.emit_output(self._stream, text)


class Namespace:
    """One downstream server: each tool is an async function attribute."""

    def __init__(self, runtime, server):
        self._name = server["name"]
        self._tool_names = {}
        for tool in server.get("tools", []):
            attr = tool["attr"]
            self._tool_names[attr] = tool["name"]
            object.__setattr__(self, attr, runtime.make_tool_function(self._name, tool))

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        close = difflib.get_close_matches(attr, list(self._tool_names), n=3)
        hint = (" Did you mean: {}?".format(", ".join(close))) if close else ""
        raise AttributeError(f"server {self._name!r} has no tool {attr!r}.{hint} Use tools.search(...) to find tools.")

    def __dir__(self):
        return sorted(self._tool_names)

    def __repr__(self):
        return "<server {}: {}>".format(self._name, ", ".join(sorted(self._tool_names)))


class Servers:
    """Every server: ``servers["file-system"]`` by its configured name, ``servers.file_system`` by identifier."""

    def __init__(self):
        self._by_name = {}
        self._by_attr = {}

    def add(self, name, attr, namespace):
        self._by_name[name] = namespace
        self._by_attr[attr or name] = namespace

    def __getitem__(self, name):
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError("no server {!r}; servers are: {}".format(name, ", ".join(sorted(self._by_name)))) from None

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(attr)
        try:
            return self.__dict__["_by_attr"][attr]
        except KeyError:
            raise AttributeError(
                "no server {!r}; servers are: {}".format(attr, ", ".join(sorted(self._by_name)))
            ) from None

    def __contains__(self, name):
        return name in self._by_name

    def __iter__(self):
        return iter(sorted(self._by_name))

    def __len__(self):
        return len(self._by_name)

    def keys(self):
        return sorted(self._by_name)

    def values(self):
        return [self._by_name[name] for name in sorted(self._by_name)]

    def items(self):
        return [(name, self._by_name[name]) for name in sorted(self._by_name)]

    def __dir__(self):
        return sorted(self._by_attr)

    def __repr__(self):
        return "<servers: {}>".format(", ".join(sorted(self._by_name)))


class SearchResults(list):
    """What ``tools.search`` returns: a list of matches that knows how many there were in all."""

    def __init__(self, matches, total, note=None):
        list.__init__(self, matches)
        self.total = total
        self.note = note

    def __repr__(self):
        text = list.__repr__(self)
        return f"{text}\n({self.note})" if self.note else text

    __str__ = __repr__


class Unavailable:
    """Stands for a configured server that could not be reached: every use says why."""

    def __init__(self, name, reason):
        self._name = name
        self._reason = reason

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise ToolError(f"{self._name}.{attr}", f"server {self._name!r} is unavailable: {self._reason}")

    def __dir__(self):
        return []

    def __repr__(self):
        return f"<server {self._name}: unavailable: {self._reason}>"


class Tools:
    """Discovery from inside a program: ``tools.search("budget")`` and ``tools.describe("server.tool")``."""

    def __init__(self, runtime):
        self._runtime = runtime

    def search(self, query, limit=DEFAULT_SEARCH_LIMIT):
        """Tools ranked by relevance to ``query``: a list of {name, call, summary, signature}; ``.total`` counts
        every match, and the list's repr says when ``limit`` cut it."""
        # The host validates (query length, 1 <= limit <= 50) and raises TypeError with the reason.
        page = self._runtime.call_blocking(SEARCH_TOOL, {"query": _short_text(query), "limit": limit})
        if not isinstance(page, dict):
            return page
        return SearchResults(page.get("matches") or [], page.get("total", 0), page.get("note"))

    def describe(self, name, schemas=False):
        """Signature, summary and arguments of ``"server.tool"`` (raw JSON schemas with ``schemas=True``);
        a server's name gives its instructions and tools."""
        return self._runtime.call_blocking(DESCRIBE_TOOL, {"name": _short_text(name), "schemas": bool(schemas)})

    def __repr__(self):
        return "<tools: use tools.search(query) and tools.describe('server.tool')>"


def _short_text(value):
    """``str(value)``; past the host's bound cut to one character more (the host refuses it with the reason, and
    megabytes are never sent only to be refused)."""
    text = value if isinstance(value, str) else str(value)
    return text[: MAX_QUERY_CHARS + 1]


class Runtime:
    """Holds the session's namespace and runs programs on one worker thread with a persistent event loop."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        self.catalog = None
        self.catalog_version = None
        self.run_id = None
        self.calls = 0
        self.pending = {}
        self.pending_lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.task = None
        self.out_limit = 0
        self.out_sent = 0
        self.out_dropped = 0
        self.stdout = Capture(self, "stdout")
        self.stderr = Capture(self, "stderr")
        self.runs = queue.Queue()
        self.end_mark_fd = None
        self.reader = None
        """Stream mode: the host's messages (a ``LineReader``), read on the worker thread itself (``serve``)."""
        self.worker = threading.Thread(target=self._work, name="ptc-program", daemon=True)

    # -- output ---------------------------------------------------------------------------------------------------

    def emit_output(self, stream, text):
        if self.run_id is None:
            return
        size = len(text.encode("utf-8", "surrogatepass"))
        room = self.out_limit - self.out_sent
        if room > 0:
            chunk = text if size <= room else text.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
            self.out_sent += len(chunk.encode("utf-8", "surrogatepass"))
            self.protocol.send({"type": OUTPUT, "id": self.run_id, "stream": stream, "data": chunk})
            size -= len(chunk.encode("utf-8", "surrogatepass"))
        if size > 0:
            self.out_dropped += size
            if self.out_dropped > FLOOD_FACTOR * self.out_limit:
                raise OutputLimitExceeded("the program kept printing past the output cap")

    def flush_output(self):
        for capture in (self.stdout, self.stderr):
            with contextlib.suppress(OutputLimitExceeded):
                capture.flush()

    # -- tool calls -----------------------------------------------------------------------------------------------

    def _next_call(self, tool, args):
        self.calls += 1
        call_id = self.calls
        self.flush_output()
        return call_id, {"type": CALL, "id": self.run_id, "call": call_id, "tool": tool, "args": args}

    async def call(self, tool, args):
        """Send a tool call and wait for the host's answer without blocking the event loop."""
        if not isinstance(args, dict):
            raise TypeError(f"{tool}(): arguments must be a dict, got {type(args).__name__}")
        future = self.loop.create_future()
        call_id, message = self._next_call(tool, args)
        with self.pending_lock:
            self.pending[call_id] = ("async", future, tool)
        self.protocol.send(message)
        try:
            return await future
        finally:
            with self.pending_lock:
                self.pending.pop(call_id, None)

    def call_blocking(self, tool, args):
        """A synchronous call (tools.search/describe): blocks this thread until the host answers."""
        event = threading.Event()
        box = {}
        call_id, message = self._next_call(tool, args)
        with self.pending_lock:
            self.pending[call_id] = ("sync", (event, box), tool)
        self.protocol.send(message)
        try:
            if self.reader is not None and threading.current_thread() is self.worker:
                # the loop that reads the host's messages is this thread's, blocked here: read them in its place
                while not event.is_set():
                    self._dispatch_line(self.reader.next_line())
            event.wait()
        finally:
            with self.pending_lock:
                self.pending.pop(call_id, None)
        if "error" in box:
            raise box["error"]
        return box["value"]

    def deliver_result(self, message):
        with self.pending_lock:
            entry = self.pending.get(message.get("call"))
        if entry is None:
            return
        kind, target, tool = entry
        if message.get("ok"):
            outcome = ("value", _from_wire(message.get("value")))
        else:
            error = message.get("error") or {}
            exc = ToolError(tool, str(error.get("message", "tool call failed")), str(error.get("type", "tool_error")))
            if error.get("type") == INVALID_ARGUMENTS:
                exc = TypeError(str(error.get("message")))
            outcome = ("error", exc)
        if kind == "sync":
            event, box = target
            box[outcome[0]] = outcome[1]
            event.set()
        elif threading.current_thread() is self.worker:
            _settle(target, outcome)  # stream mode: the result was read on the loop's own thread
        else:
            self.loop.call_soon_threadsafe(_settle, target, outcome)

    def make_tool_function(self, server, tool):
        runtime = self
        qualified = "{}.{}".format(server, tool["name"])

        async def tool_function(*args, **kwargs):
            if args:
                if len(args) == 1 and isinstance(args[0], dict) and not kwargs:
                    kwargs = dict(args[0])
                else:
                    raise TypeError(f"{qualified}() takes keyword arguments only, e.g. {qualified}(name=value)")
            return await runtime.call(qualified, kwargs)

        tool_function.__name__ = tool["attr"]
        tool_function.__qualname__ = "{}.{}".format(server, tool["attr"])
        signature = tool.get("signature") or "(**arguments)"
        tool_function.__doc__ = "{}{}\n\n{}".format(qualified, signature, tool.get("doc") or "")
        return tool_function

    # -- programs -------------------------------------------------------------------------------------------------

    def bind_catalog(self, catalog):
        """(Re)bind server namespaces; never clobber a name the program bound to something else."""
        old = self.catalog
        servers = Servers()
        for server in catalog.get("servers", []):
            servers.add(server["name"], server.get("attr"), Namespace(self, server))
        for server in catalog.get("unavailable", []):
            servers.add(server["name"], server.get("attr"), Unavailable(server["name"], server.get("reason", "")))
        previous = self.namespace.get("servers")
        for server in catalog.get("servers", []) + catalog.get("unavailable", []):
            name = server.get("global")
            if not name or name in RESERVED:
                continue
            current = self.namespace.get(name)
            was_ours = isinstance(previous, Servers) and any(current is ns for ns in previous.values())
            if current is None or was_ours:
                self.namespace[name] = servers[server["name"]]
        self.namespace["servers"] = servers
        self.catalog = catalog
        return old

    def bind_api(self):
        runtime = self

        async def call_tool(name, arguments=None):
            """Call any tool by its original name: ``await call_tool("server.tool", {...})``."""
            return await runtime.call(str(name), arguments if arguments is not None else {})

        self.namespace.update(
            {"tools": Tools(self), "call_tool": call_tool, "ToolError": ToolError, "Binary": Binary, "asyncio": asyncio}
        )

    def start(self):
        self.bind_api()
        self.worker.start()

    def _work(self):
        asyncio.set_event_loop(self.loop)
        while True:
            message = self.runs.get()
            if message is None:
                return
            self._run(message)

    def serve(self):
        """Stream mode's worker: reads the host's messages itself (between runs blocking, during a run on the
        program's event loop), so no message waits for a hand-off from another thread."""
        asyncio.set_event_loop(self.loop)
        self.loop.add_reader(self.reader.fd, self._on_readable)
        while True:
            self._dispatch_line(self.reader.next_line())
            while not self.runs.empty():
                self._run(self.runs.get())

    def _on_readable(self):
        lines = self.reader.available_lines()
        for line in [None] if lines is None else lines:
            self._dispatch_line(line)

    def _dispatch_line(self, line):
        """Act on one line from the host (a line that is not JSON is skipped); ``None``, the end of the stream,
        ends the process: the host closed our stdin, the session is over."""
        if line is None:
            os._exit(0)
        try:
            message = json.loads(line)
        except ValueError:
            return
        self.dispatch(message)

    def _run(self, message):
        self.run_id = message["id"]
        self.calls = 0
        self.out_limit = int(message.get("max_output_bytes") or DEFAULT_MAX_OUTPUT_BYTES)
        self.out_sent = 0
        self.out_dropped = 0
        if message.get("catalog") is not None:
            self.bind_catalog(message["catalog"])
            self.catalog_version = message.get("catalog_version")
        report = {"type": DONE, "id": self.run_id, "ok": True, "result": None, "result_repr": None}
        try:
            value = self.loop.run_until_complete(self._execute(message["code"]))
            self.flush_output()
            _describe_value(value, report, self.out_limit)
        except BaseException as exc:  # the program's failure is a result, whatever it raised
            with contextlib.suppress(BaseException):
                self.flush_output()
            report.update(ok=False, error=_describe_error(exc, self.name_hint(exc)))
            if report["error"] is None:
                report.update(ok=True)
                report.pop("error")
        report["tool_calls"] = self.calls
        report["output_dropped"] = self.out_dropped  # bytes past the cap: the host adds the truncation marker
        if self.end_mark_fd is not None:
            # everything written to the real fds before this mark belongs to this run (stream.RawOutput on the host)
            with contextlib.suppress(OSError):
                os.write(self.end_mark_fd, END_MARK + self.run_id.encode("ascii", "replace") + b"\x00")
        self.run_id = None
        self.protocol.send(report)

    async def _execute(self, code):
        linecache.cache[PROGRAM_FILE] = (len(code), None, code.splitlines(True), PROGRAM_FILE)
        compiled, trailing = _compiled(code)
        self.task = asyncio.current_task()
        outcome = eval(compiled, self.namespace)
        if outcome is not None and asyncio.iscoroutine(outcome):
            await outcome
        value = self.namespace.pop(trailing, None) if trailing else None
        if asyncio.iscoroutine(value):
            name = getattr(value, "__qualname__", "tool")
            value.close()
            raise TypeError("the program's last expression is an un-awaited coroutine; " + AWAIT_HINT.format(name=name))
        return value

    def name_hint(self, exc):
        """For a NameError or AttributeError on a server's name that Python means otherwise (``time``, ``json``,
        ``list``): how to reach the server; for a server that failed to start: why it is unavailable."""
        try:
            return self._name_hint(exc)
        except Exception:  # a hint must never hide the program's own error
            return None

    def _name_hint(self, exc):
        catalog = self.catalog or {}
        if isinstance(exc, NameError) and not isinstance(exc, UnboundLocalError):
            name = getattr(exc, "name", None) or _quoted_name(str(exc))
            attr = _attribute_used(exc, name)
        elif isinstance(exc, AttributeError):
            name, attr = None, getattr(exc, "name", None)
            target = getattr(exc, "obj", None)
            for server in catalog.get("servers", []) + catalog.get("unavailable", []):
                ident = server.get("attr")
                if not server.get("global") and target is not None and _names(target, ident, self.namespace):
                    name = ident
        else:
            return None
        for server in catalog.get("unavailable", []):
            if server.get("attr") == name:
                return "server {!r} is unavailable: {}".format(server["name"], server.get("reason", ""))
        for server in catalog.get("servers", []):
            if server.get("attr") != name or server.get("global"):
                continue
            tools = [tool["attr"] for tool in server.get("tools", [])]
            if attr is not None and attr not in tools:
                if isinstance(exc, AttributeError):
                    return None  # `time.sleeep`: a typo in the module's name, not a server call
                attr = None
            example = attr or (tools[0] if tools else "tool")
            return (
                "server {!r} is not a global here (`{}` is a Python name); call its tools as servers.{}.{}(...)".format(
                    server["name"], name, name, example
                )
            )
        return None

    def cancel(self):
        task = self.task
        if task is not None:
            self.loop.call_soon_threadsafe(task.cancel)

    def dispatch(self, message):
        """Act on one message from the host: the one dispatch of both drivers (``main`` reads lines from the stream,
        ``StepDriver.step`` gets a list). A ``result`` or ``cancel`` for another run than the current one is stale."""
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == RUN:
            self.protocol.received(message)
            self.runs.put(message)
        elif kind in (RESULT, CANCEL) and message.get("id") == self.run_id:
            self.protocol.received(message)
            if kind == RESULT:
                self.deliver_result(message)
            else:
                self.cancel()


_compile_cache = collections.OrderedDict()


def _compiled(code):
    """The program's code object and the name its last expression's value is stored under (``None``: it ends in a
    statement); the last few (small) programs' are kept, so a program sent again is not compiled again."""
    entry = _compile_cache.get(code)
    if entry is not None:
        _compile_cache.move_to_end(code)
        return entry
    tree = ast.parse(code, PROGRAM_FILE, "exec")
    trailing = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        trailing = "__ptc_last_value__"
        last = tree.body[-1]
        target = ast.copy_location(ast.Name(id=trailing, ctx=ast.Store()), last)
        tree.body[-1] = ast.copy_location(ast.Assign(targets=[target], value=last.value), last)
    compiled = compile(tree, PROGRAM_FILE, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    if len(code) <= 1 << 16:
        _compile_cache[code] = (compiled, trailing)
        if len(_compile_cache) > 32:
            _compile_cache.popitem(last=False)
    return compiled, trailing


def _settle(future, outcome):
    if future.done():
        return
    if outcome[0] == "value":
        future.set_result(outcome[1])
    else:
        future.set_exception(outcome[1])


def _describe_value(value, report, limit):
    if value is None:
        return
    text = repr(value)
    if len(text) > limit:
        text = text[:limit] + "... [repr truncated]"
    report["result_repr"] = text
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return
    if len(encoded) <= 4 * limit and _nesting(encoded) <= RESULT_NESTING:
        report["result"] = value


def _nesting(encoded):
    """How deep lists/objects nest in a JSON text (deeper than RESULT_NESTING travels as repr only)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in encoded:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _quoted_name(message):
    """``x`` from Python's "name 'x' is not defined"."""
    parts = message.split("'")
    return parts[1] if len(parts) >= 3 else None


def _attribute_used(exc, name):
    """``attr`` when the program's failing line reads ``name.attr`` (so the hint can show the whole call)."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == PROGRAM_FILE]
    if not frames or not name:
        return None
    line = frames[-1].line or ""
    marker = name + "."
    at = line.find(marker)
    while at > 0 and (line[at - 1].isalnum() or line[at - 1] in "_."):
        at = line.find(marker, at + 1)
    if at < 0:
        return None
    rest = line[at + len(marker) :]
    attr = ""
    for char in rest:
        if not (char.isalnum() or char == "_"):
            break
        attr += char
    return attr or None


def _names(target, ident, namespace):
    """Whether ``target`` is what the name ``ident`` means in the program: a module, builtin or API object."""
    if namespace.get(ident) is target:
        return True
    builtins_module = sys.modules.get("builtins")
    if getattr(builtins_module, ident, None) is target:
        return True
    return getattr(target, "__name__", None) == ident and type(target).__name__ == "module"


def _describe_error(exc, hint=None):
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return None
    if isinstance(exc, OutputLimitExceeded):
        kind = "output_limit"
    elif isinstance(exc, MemoryError):
        kind = "memory_limit"
    elif _is_process_limit(exc):
        kind = "process_limit"
    elif isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        kind = "disk_limit"
    elif isinstance(exc, asyncio.CancelledError):
        kind = "cancelled"
    elif isinstance(exc, ToolError) and exc.error_type in ("tool_denied", "tool_call_limit"):
        kind = exc.error_type
    elif isinstance(exc, ToolError):
        kind = "tool_error"
    else:
        kind = "program_error"
    message = str(exc)
    if (
        hint is None
        and isinstance(exc, (TypeError, AttributeError))
        and "coroutine" in message
        and "await" not in message
    ):
        hint = AWAIT_HINT.format(name="server.tool")
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == PROGRAM_FILE]
    lines = []
    if frames:
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_list(frames))
    lines.extend(traceback.format_exception_only(type(exc), exc))
    if hint:
        message += "\nhint: " + hint
        lines.append(f"hint: {hint}\n")
    return {"type": kind, "exc_type": type(exc).__name__, "message": message, "traceback": "".join(lines)}


def _is_process_limit(exc):
    if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
        return True  # fork() refused by the process limit
    return isinstance(exc, RuntimeError) and "can't start new thread" in str(exc)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    text = warnings.formatwarning(message, category, filename, lineno, line)
    if category is RuntimeWarning and "never awaited" in str(message):
        text += "hint: " + AWAIT_HINT.format(name="server.tool") + "\n"
    sys.stderr.write(text)


def _channel_fds():
    """The host's direct channel (``CHANNEL_ENV``), connected twice before any program runs: the protocol's socket,
    then the socket fds 1 and 2 go to (the host takes them in this order). ``None``: use stdin/stdout."""
    path = os.environ.pop(CHANNEL_ENV, None)
    if not path:
        return None
    protocol = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        protocol.connect(path)
    except OSError:  # not reachable here (a remote engine, Docker Desktop's VM): the host waits on stdout too
        protocol.close()
        return None
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(path)  # the host waits for this one: failing now (it cannot) ends the runtime, which it reports
    return protocol.detach(), raw.detach()


def _take_stdio():
    """Move the protocol off fds 0 and 1 so nothing the program does can read or write it; fds 1 and 2 become the
    raw output's (stderr's, or the direct channel's second socket)."""
    channel = _channel_fds()
    if channel is None:
        proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
        proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    else:
        proto, raw = channel
        proto_in = os.fdopen(proto, "rb", buffering=0)
        proto_out = os.fdopen(os.dup(proto), "wb", buffering=0)
        os.dup2(raw, 2)
        os.close(raw)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the program's stdin for the interpreter's whole life
    return proto_in, proto_out


class LineReader:
    """The host's messages in stream mode: lines from the protocol fd, read by the worker thread only. The fd stays
    blocking (a socket channel shares it with the writes): a read happens only once ``select`` says it cannot block."""

    def __init__(self, fd):
        self.fd = fd
        self._buffer = b""
        self._lines = collections.deque()

    def next_line(self):
        """The next line, waiting for it (``None``: the host closed the stream)."""
        while not self._lines:
            if not self._read(None):
                return None
        return self._lines.popleft()

    def available_lines(self):
        """The complete lines that have arrived (``None`` at the end of the stream)."""
        if not self._read(0):
            return None
        lines = list(self._lines)
        self._lines.clear()
        return lines

    def _read(self, timeout):
        if not select.select([self.fd], [], [], timeout)[0]:
            return True  # nothing yet (another reader on this thread took what made the loop see the fd readable)
        data = os.read(self.fd, 1 << 16)
        if not data:
            return False
        parts = (self._buffer + data).split(b"\n")
        self._buffer = parts.pop()
        self._lines.extend(parts)
        return True


def _exit_on_hangup(fd):
    """The main thread's watch: exit when the host closes our stdin, even while a program keeps the loop busy."""
    watch = select.poll()
    watch.register(fd, getattr(select, "POLLRDHUP", 0))
    while True:
        for _, events in watch.poll():
            if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL | getattr(select, "POLLRDHUP", 0)):
                os._exit(0)


def main():
    proto_in, proto_out = _take_stdio()
    protocol = Protocol(proto_out)
    runtime = Runtime(protocol)
    runtime.end_mark_fd = 2
    runtime.reader = LineReader(proto_in.fileno())
    runtime.worker = threading.Thread(target=runtime.serve, name="ptc-program", daemon=True)
    sys.stdout = runtime.stdout
    sys.stderr = runtime.stderr
    warnings.showwarning = _show_warning
    runtime.start()
    protocol.send(_ready_message())
    _exit_on_hangup(proto_in.fileno())


# -- stepped mode ---------------------------------------------------------------------------------------------------
# Backends that cannot hold a stream open (AgentCore Code Interpreter answers one executeCode at a time) load this
# file into the interpreter's persistent process without running main(), create one StepDriver, and call
# ``step()`` once per executeCode. The program runs on the Runtime's worker thread exactly as in streaming mode.


class _RoutedStream(_TextStream):
    """sys.stdout/sys.stderr in stepped mode: the program's threads print to the run, the host's thread passes."""

    def __init__(self, driver, original, capture):
        _TextStream.__init__(self)
        self._driver = driver
        self.original = original
        self._capture = capture

    def _target(self):
        if threading.get_ident() == self._driver.host_thread:
            return self.original
        return self._capture

    def write(self, text):
        return self._target().write(text)

    def flush(self):
        target = self._target()
        if target is not None:
            target.flush()


def _watched_selector(driver):
    """The worker loop's selector: tells the driver when the loop waits with nothing ready to run."""
    import selectors

    base = selectors.DefaultSelector

    class WatchedSelector(base):
        def select(self, timeout=None):
            driver.loop_waiting(timeout is None or timeout > 0)
            try:
                return base.select(self, timeout)
            finally:
                driver.loop_waiting(False)

    return WatchedSelector()


class StepDriver:
    """Runs programs in steps: ``step(seq, messages_json) -> messages_json`` (see docs/backends/agentcore.md).

    A step delivers the host's messages (``run``, ``result``, ``cancel``), then waits until the program is done,
    or is blocked with nothing to do but wait for unanswered tool calls, or ``wait_s`` has passed; it returns
    everything the runtime sent meanwhile. Calls made together (``asyncio.gather``) leave in the same step.
    The driver is its runtime's channel (``send``/``received``, as ``Protocol`` is in streaming mode).
    """

    def __init__(self, wait_s=STEP_WAIT_S, flush_s=OUTPUT_FLUSH_S):
        self.wait_s = float(wait_s)
        self.flush_s = float(flush_s)
        self.output_since = None
        self.cond = threading.Condition()
        self.outbox = []
        self.unanswered = set()
        self.idle = False
        self.idle_entries = 0
        self.delivered_at = 0
        self.running = False
        self.running_id = None
        self.last_seq = 0
        self.last_reply = "[]"
        self.host_thread = None
        self.runtime = Runtime(self)
        self.runtime.loop.close()
        self.runtime.loop = asyncio.SelectorEventLoop(_watched_selector(self))
        self.runtime.start()
        warnings.showwarning = _show_warning

    # the runtime's channel: send() from the runtime's threads, received() from dispatch() on the host's

    def send(self, message):
        """Collect what the runtime sends until the step returns it."""
        with self.cond:
            kind = message.get("type")
            if kind == CALL:
                self.unanswered.add(message.get("call"))
            elif kind == DONE and message.get("id") == self.running_id:
                self.running = False  # a cancelled earlier run's "done" must not end the current one
            elif kind == OUTPUT and self.output_since is None:
                self.output_since = _monotonic()
            self.outbox.append(message)
            self.cond.notify_all()

    def received(self, message):
        """Book-keeping before the runtime acts on a host message (so its answer cannot come first)."""
        kind = message.get("type")
        with self.cond:
            if kind == RUN:
                self.unanswered = set()
                self.running = True
                self.running_id = message.get("id")
            elif kind == RESULT:
                self.unanswered.discard(message.get("call"))

    # called from the worker loop's selector

    def loop_waiting(self, idle):
        with self.cond:
            self.idle = idle
            if idle:
                self.idle_entries += 1
            self.cond.notify_all()

    # called by the host, once per executeCode

    def ready(self):
        """The ``ready`` message, as JSON."""
        return _encode(_ready_message())

    def step(self, seq, messages_json, wait_s=None):
        """Deliver ``messages_json`` (a JSON list), wait as described above, return the runtime's messages."""
        seq = int(seq)
        if seq <= self.last_seq:  # a retried step: the host never saw our reply
            return self.last_reply if seq == self.last_seq else "[]"
        self.host_thread = threading.get_ident()
        self._route_stdio()
        with self.cond:
            self.delivered_at = self.idle_entries
        for message in json.loads(messages_json):
            self.runtime.dispatch(message)
        deadline = _monotonic() + (self.wait_s if wait_s is None else float(wait_s))
        with self.cond:
            while not self._settled():
                limit = deadline
                if self.output_since is not None:
                    limit = min(limit, self.output_since + self.flush_s)
                remaining = limit - _monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
            messages, self.outbox = self.outbox, []
            self.output_since = None
        reply = _encode(messages)
        self.last_seq, self.last_reply = seq, reply
        return reply

    def _settled(self):
        if not self.running:
            return True
        if not self.unanswered:
            return False
        if self.idle and self.idle_entries > self.delivered_at:
            return True
        with self.runtime.pending_lock:
            entries = list(self.runtime.pending.items())
        return any(entry[0] == "sync" and call_id in self.unanswered for call_id, entry in entries)

    def _route_stdio(self):
        runtime = self.runtime
        if not isinstance(sys.stdout, _RoutedStream):
            sys.stdout = _RoutedStream(self, sys.stdout, runtime.stdout)
        if not isinstance(sys.stderr, _RoutedStream):
            sys.stderr = _RoutedStream(self, sys.stderr, runtime.stderr)


def _monotonic():
    import time

    return time.monotonic()


if __name__ in ("__main__", RUNTIME_MODULE):
    main()

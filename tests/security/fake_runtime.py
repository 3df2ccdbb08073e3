"""A hostile stand-in for the sandbox runtime: speaks just enough of the protocol to get a run, then says anything.

Started like the real runtime (``BOOTSTRAP`` sends its size and source on stdin; this script reads and ignores
them), it says ``ready``, waits for a ``run`` message and writes the lines of the scenario file (``argv[1]``: a JSON
list of base64 lines, ``{RUN}`` replaced by the run's id) to stdout verbatim, then waits for stdin to close.
"""

import base64
import json
import sys

source_in = sys.stdin.buffer
size = int(source_in.readline())
source_in.read(size)
out = sys.stdout.buffer
out.write(b'{"type":"ready","python":"3.0.0","pid":1}\n')
out.flush()
with open(sys.argv[1]) as handle:
    lines = [base64.b64decode(line) for line in json.load(handle)]
for raw in source_in:
    try:
        message = json.loads(raw)
    except ValueError:
        continue
    if isinstance(message, dict) and message.get("type") == "run":
        run_id = message["id"].encode()
        for line in lines:
            try:
                out.write(line.replace(b"{RUN}", run_id))
                out.flush()
            except BrokenPipeError:
                sys.exit(0)
for _ in source_in:  # hold stdout open until the host closes stdin or kills us
    pass

// The official TypeScript MCP client (npm @modelcontextprotocol/sdk, the SDK Claude Desktop and IDEs build on)
// talking to `ptc-mcp serve` over stdio. Run by tests/test_typescript_client.py with NODE_PATH set to `npm root -g`.
// Usage: node ts_client.cjs PYTHON CONFIG; prints one JSON report on stdout.
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const { DEFAULT_REQUEST_TIMEOUT_MSEC } = require("@modelcontextprotocol/sdk/shared/protocol.js");

async function main() {
  const [python, config] = process.argv.slice(2);
  const transport = new StdioClientTransport({
    command: python,
    args: ["-m", "ptc_mcp", "serve", "--config", config],
    stderr: "inherit",
  });
  const client = new Client({ name: "ts-client-test", version: "1.0.0" });
  await client.connect(transport);
  const report = { defaultRequestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MSEC };
  const structured = (result) => result.structuredContent;

  report.tools = (await client.listTools()).tools;
  // Variables persist between calls: the stdio connection owns one session.
  await client.callTool({ name: "execute_program", arguments: { code: "n = 21" } });
  report.kept = structured(await client.callTool({ name: "execute_program", arguments: { code: "n * 2" } }));
  // A number for timeout_s, as a client that builds forms from the schema sends it; the run ends with `timeout`.
  report.timedOut = structured(
    await client.callTool({ name: "execute_program", arguments: { code: "while True:\n    pass", timeout_s: 2 } })
  );
  // A program that computes silently for longer than the client's request timeout still completes, because the
  // server sends progress heartbeats and the client resets its timeout on each.
  const progress = [];
  report.silent = structured(
    await client.callTool(
      { name: "execute_program", arguments: { code: "import time\ntime.sleep(10)\n'done'" } },
      undefined,
      // The first heartbeat comes 5 s in: 3 s of margin on a loaded machine, and the program outlasts the timeout.
      { timeout: 8000, resetTimeoutOnProgress: true, onprogress: (p) => progress.push(p) }
    )
  );
  report.progress = progress;
  await client.close();
  process.stdout.write(JSON.stringify(report));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(1);
});

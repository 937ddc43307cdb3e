// The worker side of bench/control.py: one JSON request per line on stdin, one JSON answer
// per line on stdout ({"ok": true, ...} or {"ok": false, "error": "..."}), until stdin closes.

import readline from "node:readline";

export async function serve(handlers, input = process.stdin, output = process.stdout) {
  for await (const line of readline.createInterface({ input, crlfDelay: Infinity })) {
    let reply;
    try {
      const { cmd, ...args } = JSON.parse(line);
      if (!Object.hasOwn(handlers, cmd)) {
        throw new Error(`unknown command; known: ${Object.keys(handlers).sort().join(", ")}`);
      }
      reply = { ok: true, ...(await handlers[cmd](args)) };
    } catch (err) {
      console.error(err);
      reply = { ok: false, error: `${err.name}: ${err.message}` };
    }
    output.write(`${JSON.stringify(reply)}\n`);
  }
}

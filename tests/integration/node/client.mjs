// A real socket.io-client v4, as browsers use it, driven by the Python tests.
// Usage: node client.mjs URL AUTH_JSON [TRANSPORTS_JSON]
// Prints one JSON line per thing that happens; reads JSON commands from stdin:
// {"emit": "ping", "data": {...}}, {"cut": true} (the transport closes, as when the signal is lost:
// the client reconnects and recovers its session; "offline_ms", also alone, holds every reconnection
// back that long from then on; with "stay_offline" it does not reconnect until {"reconnect": true})
// or {"close": true}; {"state": true} prints whether the socket is active (would connect again) and
// whether its manager is reconnecting. Exits when stdin closes. A connect record shows the client's
// private session id and last offset (connection state recovery), which a test may hand to another
// client in its auth.
// An event's trailing offset (connection state recovery) is printed apart from its data.
import { createInterface } from "node:readline";

// SOCKET_IO_CLIENT names another installed client package: "socket.io-client-4-5" (4.5.4, from
// before connection state recovery) shows what older clients get.
const { io } = await import(process.env.SOCKET_IO_CLIENT ?? "socket.io-client");

const [url, authJson, transportsJson] = process.argv.slice(2);
const print = (record) => process.stdout.write(JSON.stringify(record) + "\n");

const socket = io(url, {
  auth: JSON.parse(authJson),
  transports: transportsJson ? JSON.parse(transportsJson) : ["websocket"],
  reconnectionDelay: 100,
  reconnectionDelayMax: 500,
});

socket.on("connect", () => print({
  kind: "connect", id: socket.id, recovered: socket.recovered, pid: socket._pid ?? null,
  offset: socket._lastOffset ?? null,
}));
socket.on("connect_error", (err) => print({ kind: "connect_error", message: err.message, data: err.data ?? null }));
socket.on("disconnect", (reason) => print({ kind: "disconnect", reason }));
socket.io.on("reconnect_attempt", (attempt) => print({ kind: "reconnect_attempt", attempt }));
const OFFSET = /^\d+-\d+$/;
socket.onAny((event, ...args) => {
  const last = args[args.length - 1];
  const offset = typeof last === "string" && OFFSET.test(last) ? args.pop() : null;
  print({ kind: "event", event, data: args.length === 1 ? args[0] : args, offset });
});

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line);
  if (command.close) {
    socket.close();
  } else if (command.cut || command.offline_ms) {
    if (command.offline_ms) {
      socket.io.randomizationFactor(0).reconnectionDelay(command.offline_ms).reconnectionDelayMax(command.offline_ms);
    }
    socket.io.reconnection(!command.stay_offline);
    if (command.cut) socket.io.engine.close();
  } else if (command.reconnect) {
    socket.io.reconnection(true);
    socket.connect();
  } else if (command.state) {
    print({ kind: "state", active: socket.active, reconnecting: socket.io._reconnecting ?? false });
  } else if (command.emit) {
    socket.emit(command.emit, ...(command.data === undefined ? [] : [command.data]));
  }
});
lines.on("close", () => {
  socket.close();
  process.exit(0);
});

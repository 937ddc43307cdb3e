// KindMap's additions to the vendored protocol suites (see ../README.md): what the suites must
// know about the replica under test, given in the environment by ../test_protocol_suites.py.

const env = process.env;

// Defaults are the upstream suites' values, so the suites still run as published against the
// reference server on port 3000 when nothing is set.
export const URL = env.PROTOCOL_SUITE_URL ?? "http://localhost:3000";
export const PING_INTERVAL = Number(env.PROTOCOL_SUITE_PING_INTERVAL ?? 300);
export const PING_TIMEOUT = Number(env.PROTOCOL_SUITE_PING_TIMEOUT ?? 200);
export const MAX_PAYLOAD = Number(env.PROTOCOL_SUITE_MAX_PAYLOAD ?? 1000000);
// The CONNECT payload our replica accepts (AUTH_MODE=dev: {"user_id": ...}).
export const AUTH = JSON.parse(env.PROTOCOL_SUITE_AUTH ?? "{}");

// Sends a CONNECT with AUTH on `socket` and resolves with the server's CONNECT reply (`40{...}`),
// once the connection to the main namespace is complete. After an upgrade ("2probe", "5") it also
// tells when "5" has been handled: the server reads a WebSocket's frames in order.
export function connectAndAwaitReply(socket) {
  const answer = new Promise((resolve) => {
    const handler = (event) => {
      if (typeof event.data === "string" && event.data.startsWith("40")) {
        socket.removeEventListener("message", handler);
        resolve(event.data);
      }
    };
    socket.addEventListener("message", handler);
  });
  socket.send(`40${JSON.stringify(AUTH)}`);
  return answer;
}

// Sends our app's `ping` event on a connected `socket` and resolves with its `pong` packet:
// the stand-in for the reference server's echo, which our replica does not have.
export function pingAndAwaitPong(socket) {
  const answer = new Promise((resolve) => {
    const handler = (event) => {
      if (typeof event.data === "string" && event.data.startsWith('42["pong",')) {
        socket.removeEventListener("message", handler);
        resolve(event.data);
      }
    };
    socket.addEventListener("message", handler);
  });
  socket.send('42["ping"]');
  return answer;
}

// One Socket.IO connection to the replica that served the page, and what happens to it.
// It knows nothing of the page: it reports to a `view` with
//   state(name, text), transport(text), replica(info), session(outcome), rtt(text), attempts(text),
//   event(name, data, offset), info(text, data?), failure(error)
// so main.js decides how things look.
//
// Connection state recovery: after a lost connection socket.io-client reconnects with the session
// id and last offset it holds; the server then restores the socket (`socket.recovered`), writes
// the messages missed meanwhile, and only then its `connected` welcome, whose `replayed` says how
// many there were. `session(outcome)` reports, after each welcome, one of
//   {kind: "new", recoverable}  the socket's first connection; recoverable: the server keeps a session
//   {kind: "recovered", replayed}  a reconnection that got its session back
//   {kind: "resync"}  a reconnection that got a new session: what was sent meanwhile is lost

import { io } from "./socket.io.esm.min.js";

const PING_TIMEOUT_MS = 5000;
const CONNECT_PACKET = 0;  // socket.io-parser's PacketType.CONNECT, which the bundle does not export

export class Connection {
  #socket = null;
  #view;
  #pings = 0;

  constructor(view) {
    this.#view = view;
    this.token = null;  // the token of the current connection, for the emit API
  }

  get connected() {
    return this.#socket?.connected ?? false;
  }

  // Connecting, connected or reconnecting: the button then reads "Disconnect".
  get active() {
    return this.#socket !== null;
  }

  // getToken() is called before every (re)connection, so a replica restarted in the
  // meantime, which no longer knows the old dev token, is given a fresh one.
  open(getToken) {
    this.close();
    const socket = io({
      forceNew: true,
      reconnectionDelayMax: 5000,
      auth: (send) => {
        getToken().then(
          (token) => {
            if (this.#socket === socket) {
              this.token = token;
              send({ token });
            }
          },
          (error) => {
            this.#view.failure(error);
            this.close();
          },
        );
      },
    });
    this.#socket = socket;
    this.#view.state("connecting", "Connecting…");
    this.#watch(socket);
  }

  close() {
    const socket = this.#socket;
    this.#forget();
    if (socket !== null) {
      socket.disconnect();
      this.#view.state("disconnected", "Disconnected");
    }
  }

  #forget() {
    this.#socket = null;
    this.token = null;
  }

  ping() {
    const socket = this.#socket;
    if (socket === null || !socket.connected) {
      return;
    }
    const id = ++this.#pings;
    const started = performance.now();
    socket.timeout(PING_TIMEOUT_MS).emit("ping", { id }, (error) => {
      if (error) {
        this.#view.rtt(`no pong within ${PING_TIMEOUT_MS / 1000} s`);
      } else {
        this.#view.rtt(`${Math.round(performance.now() - started)} ms (ping #${id})`);
      }
    });
  }

  #watch(socket) {
    const view = this.#view;
    const manager = socket.io;

    manager.on("open", () => {
      const engine = manager.engine;
      view.transport(engine.transport.name);
      engine.on("upgrade", (transport) => {
        view.transport(`${transport.name} (upgraded from polling)`);
        view.info(`transport upgraded to ${transport.name}`);
      });
    });
    manager.on("reconnect_attempt", (attempt) => {
      view.state("reconnecting", `Reconnecting (attempt ${attempt})`);
      view.attempts(`attempt ${attempt}…`);
      view.info(`reconnection attempt ${attempt}`);
    });
    manager.on("reconnect", (attempt) => {
      view.attempts(`reconnected after ${attempt} attempt${attempt === 1 ? "" : "s"}`);
      view.info(`reconnected after ${attempt} attempt${attempt === 1 ? "" : "s"}`);
    });

    // The session id (connection state recovery) the server gave this socket in its CONNECT reply,
    // if any. socket.io-client keeps its copy private (and minified), so the page reads it where
    // the client does, in that reply: it reaches this listener before any event that follows it.
    let sessionId = null;
    manager.on("packet", (packet) => {
      if (packet.type === CONNECT_PACKET && packet.nsp === socket.nsp) {
        sessionId = packet.data?.pid ?? null;
      }
    });
    // Per socket: whether a connection came before this one, and whether this one was recovered.
    let connections = 0;
    let recovered = false;
    socket.on("connect", () => {
      connections += 1;
      recovered = socket.recovered === true;
      view.state("connected", "Connected");
      view.info(`connected (socket ${socket.id})`);
      this.ping();
    });
    // The server closes a socket whose token expired; the page connects again at once,
    // and the auth callback fetches a fresh dev token.
    let tokenExpired = false;
    socket.on("error", (payload) => {
      tokenExpired = payload?.code === "TOKEN_EXPIRED";
    });
    socket.on("disconnect", (reason) => {
      view.replica(null);
      view.session(null);
      view.transport("—");
      view.info(`disconnected: ${reason}`);
      if (tokenExpired && reason === "io server disconnect" && this.#socket === socket) {
        tokenExpired = false;
        view.state("reconnecting", "Token expired, reconnecting with a fresh one…");
        socket.connect();
      } else if (socket.active) {
        view.state("reconnecting", "Connection lost, reconnecting…");
      } else if (this.#socket === socket) {
        this.#forget();
        view.state("disconnected", "Disconnected by the server");
      }
    });
    socket.on("connect_error", (error) => {
      if (socket.active) {
        view.info(`connection failed, will retry: ${error.message}`);
        return;
      }
      // The server refused the handshake: error.data is its error payload. No retry.
      view.failure(error.data ?? { code: "CONNECT_ERROR", message: error.message });
      view.state("refused", "Refused");
      this.#forget();
    });
    socket.on("connected", (info) => {
      view.replica(info);
      view.session(connections === 1 ? { kind: "new", recoverable: sessionId !== null }
        : recovered ? { kind: "recovered", replayed: info.replayed } : { kind: "resync" });
    });
    // A socket that holds a session id gets every stored event with its offset as an extra last
    // argument, and any other event whose last argument is a string with one too: socket.io-client
    // (4.8, socket.js emitEvent) takes a trailing string for the offset exactly when it holds a
    // session id, and so does the page, which shows the offset apart from the data.
    socket.onAny((event, ...args) => {
      const offset = sessionId !== null && typeof args.at(-1) === "string" ? args.pop() : null;
      view.event(event, args.length === 1 ? args[0] : args, offset);
    });
  }
}

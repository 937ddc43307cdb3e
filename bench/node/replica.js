// The replica's parts that need no package: who is connecting, the error payload, and the
// adapter chosen by SOCKETIO_ADAPTER together with a wait for its subscriptions.
// tests/bench/test_node.py runs them under `node`.

const USER_ID = /^[A-Za-z0-9_.:@-]{1,128}$/; // server/sio/auth.py's USER_ID_PATTERN
const SUBSCRIBE_METHODS = ["subscribe", "pSubscribe", "sSubscribe"];

/** The user id claimed in dev mode (`auth: {user_id}`), as ours accepts it, or null. */
export function authenticate(auth) {
  const userId = auth?.user_id;
  return typeof userId === "string" && USER_ID.test(userId) ? userId : null;
}

/** The project's error payload (docs/protocol.md), sent as `connect_error` data. */
export function errorPayload(code, message) {
  return { type: "error", code, message, timestamp: new Date().toISOString().replace("Z", "+00:00") };
}

/**
 * The Socket.IO adapter of `mode` ("classic" or "sharded", a key of `adapters`) on the
 * given clients, and `subscribed()`, which resolves once every subscription the adapter
 * asked for while the Server was built has been confirmed by Redis.
 *
 * The adapter does not return its subscribe calls, so the subscriber client's subscribe
 * methods are watched until `subscribed()` is called; later ones (the sharded adapter's
 * per-room channels) go straight through.
 */
export function adapterFactory(adapters, mode, pubClient, subClient, prefix) {
  const create = adapters[mode];
  if (create === undefined) {
    throw new Error(`SOCKETIO_ADAPTER must be one of ${Object.keys(adapters).join(", ")}, got ${mode}`);
  }
  const pending = [];
  let watching = true;
  for (const method of SUBSCRIBE_METHODS) {
    const original = subClient[method];
    if (typeof original !== "function") continue;
    subClient[method] = (...args) => {
      const confirmed = original.apply(subClient, args);
      if (watching) pending.push(confirmed);
      return confirmed;
    };
  }
  // Each adapter names its channel prefix differently; unset keeps its default ("socket.io").
  const options = prefix ? (mode === "classic" ? { key: prefix } : { channelPrefix: prefix }) : {};
  return {
    adapter: create(pubClient, subClient, options),
    async subscribed() {
      watching = false;
      if (pending.length === 0) throw new Error(`the ${mode} adapter subscribed to nothing`);
      await Promise.all(pending);
    },
  };
}

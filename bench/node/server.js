// `node bench/node/server.js`: one Node Socket.IO 4 replica, the benchmark's reference system.
//
// It serves the load generator exactly as a replica of ours does in the benchmark: dev-mode
// auth (`auth: {user_id}`), every socket of user U in room "user:U", then the event
// `connected`; GET /healthz, and GET /readyz once its Redis subscriptions are confirmed.
// Configured by environment like ours: HOST, PORT, INSTANCE_ID, REDIS_URL, SOCKETIO_CHANNEL
// (the adapter's channel prefix), and SOCKETIO_ADAPTER: "classic" (createAdapter,
// PSUBSCRIBE/PUBLISH) or "sharded" (createShardedAdapter, SSUBSCRIBE/SPUBLISH, one channel
// per room). SIGTERM closes it.

import http from "node:http";
import { createRequire } from "node:module";

import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

import { adapterFactory, authenticate, errorPayload } from "./replica.js";

const env = process.env;
const VERSION = createRequire(import.meta.url)("socket.io/package.json").version;
const ADAPTERS = { classic: createAdapter, sharded: createShardedAdapter };

const pubClient = createClient({ url: env.REDIS_URL });
const subClient = pubClient.duplicate();
for (const client of [pubClient, subClient]) {
  client.on("error", (err) => console.error(`redis: ${err.message}`));
}
await Promise.all([pubClient.connect(), subClient.connect()]);

let ready = false;
const httpServer = http.createServer((req, res) => {
  const status = req.url === "/healthz" || (req.url === "/readyz" && ready) ? 200 : req.url === "/readyz" ? 503 : 404;
  res.writeHead(status, { "content-type": "text/plain" }).end(status === 200 ? "ok" : "");
});

// The adapter subscribes while the Server is built (its default namespace); those subscribe
// calls are awaited before /readyz says 200, so no message of the load is published too early.
const { adapter, subscribed } = adapterFactory(ADAPTERS, env.SOCKETIO_ADAPTER, pubClient, subClient,
  env.SOCKETIO_CHANNEL);
const io = new Server(httpServer, {
  adapter,
  serveClient: false,
  // Accepted when a client offers it only with WEBSOCKET_COMPRESSION=true, as ours; threshold 0
  // then compresses every message as ours does (engine.io's default, 1 KiB, skips 200-byte ones).
  perMessageDeflate: env.WEBSOCKET_COMPRESSION === "true" ? { threshold: 0 } : false,
});
await subscribed();

io.use((socket, next) => {
  const userId = authenticate(socket.handshake.auth);
  if (userId === null) {
    const err = new Error("user_id must be 1-128 letters, digits or _.:@-");
    err.data = errorPayload("INVALID_PARAMETERS", err.message);
    return next(err);
  }
  socket.data.userId = userId;
  next();
});

io.on("connection", (socket) => {
  const userId = socket.data.userId;
  socket.join(`user:${userId}`);
  socket.emit("connected", { user_id: userId, sid: socket.id, instance_id: env.INSTANCE_ID,
    server_version: `socket.io ${VERSION}` });
});

httpServer.listen(Number(env.PORT), env.HOST, () => {
  ready = true;
});

process.on("SIGTERM", () => {
  io.close(() => {
    Promise.allSettled([pubClient.quit(), subClient.quit()]).then(() => process.exit(0));
  });
});

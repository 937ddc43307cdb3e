// `node bench/node/emitter.js`: the backend publisher of the Node systems, a worker process of
// the benchmark's orchestrator driven like bench/emitter.py (commands `open`, `run`, `close`;
// see bench/control.py). `open` takes the same {system, redis_url, channel}:
//
// - node-classic: @socket.io/redis-emitter, PUBLISH on the classic adapter's channels;
// - node-sharded: no Redis emitter speaks the sharded adapter (socket.io-redis-emitter#127:
//   it PUBLISHes in the classic format, and a sharded subscriber hears only SPUBLISH), so a
//   Socket.IO Server that listens on no port emits server-side through createShardedAdapter,
//   which SPUBLISHes each message on its room's channel.
//
// Both await each publish's reply from Redis, as the Python emitters do: the libraries send
// without returning it, so the publishing client's method is watched for the promise.

import { createShardedAdapter } from "@socket.io/redis-adapter";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import { Server } from "socket.io";

import { serve } from "./control.js";
import { runStep } from "./pacing.js";

function redisClient(url) {
  const client = createClient({ url });
  client.on("error", (err) => console.error(`redis: ${err.message}`));
  return client;
}

/** Replaces `client[method]` so that the promise of its latest call can be taken. */
function watchCalls(client, method) {
  const original = client[method];
  let last = null;
  client[method] = (...args) => (last = original.apply(client, args));
  return () => {
    const promise = last;
    last = null;
    if (promise === null) throw new Error(`the publisher made no ${method} call`);
    return promise;
  };
}

class ClassicPublisher {
  constructor(redisUrl, channel) {
    this.client = redisClient(redisUrl);
    this.channel = channel;
  }

  async open() {
    await this.client.connect();
    this.published = watchCalls(this.client, "publish");
    this.emitter = new Emitter(this.client, { key: this.channel });
  }

  toRoom(room, event, data) {
    this.emitter.to(room).emit(event, data);
    return this.published();
  }

  toAll(event, data) {
    this.emitter.emit(event, data);
    return this.published();
  }

  async close() {
    await this.client.quit();
  }
}

class ShardedPublisher {
  constructor(redisUrl, channel) {
    this.pubClient = redisClient(redisUrl);
    this.subClient = redisClient(redisUrl);
    this.channel = channel;
  }

  async open() {
    await Promise.all([this.pubClient.connect(), this.subClient.connect()]);
    this.published = watchCalls(this.pubClient, "sPublish");
    this.io = new Server({ adapter: createShardedAdapter(this.pubClient, this.subClient,
      { channelPrefix: this.channel }) });
  }

  toRoom(room, event, data) {
    this.io.to(room).emit(event, data);
    return this.published();
  }

  toAll(event, data) {
    this.io.emit(event, data);
    return this.published();
  }

  async close() {
    await this.io.close();
    await Promise.allSettled([this.pubClient.quit(), this.subClient.quit()]);
  }
}

const PUBLISHERS = { "node-classic": ClassicPublisher, "node-sharded": ShardedPublisher };

let publisher = null;

async function close() {
  const open = publisher;
  publisher = null;
  if (open !== null) await open.close();
  return {};
}

const handlers = {
  async open({ system, redis_url: redisUrl, channel }) {
    const Publisher = PUBLISHERS[system];
    if (Publisher === undefined) throw new Error(`unknown system ${JSON.stringify(system)}`);
    await close();
    const opening = new Publisher(redisUrl, channel);
    await opening.open();
    publisher = opening;
    return {};
  },
  run(args) {
    if (publisher === null) throw new Error("open first");
    return runStep(publisher, args);
  },
  close,
};

await serve(handlers);
await close();
process.exit(0);

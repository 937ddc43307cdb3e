// `node bench/node/riders.mjs`: the riders of `python -m bench.faults`, real socket.io-client
// 4.8 sockets (one per user) driven like the other workers (commands on stdin, see control.js):
//
// - `start {url, users, networks, timeout_ms}`: connect every user (dev mode: `auth: {user_id}`)
//   through Nginx, rider i from local address 127.0.(1 + i % networks).1, so that Nginx's ip_hash
//   (first three octets) spreads them over the replicas; answers once each was welcomed
//   (the server's `connected` event), with the replica that welcomed each;
// - `tunnel {plan: [{user, at_ms, offline_ms}]}`: at `at_ms` from now, the rider loses its signal:
//   its transport is cut (`socket.io.engine.close()`) and it reconnects no sooner than `offline_ms`
//   later, then with the usual delays again;
// - `progress`: distinct message ids received so far, riders connected, cuts still to come;
// - `collect`: per user, every message id in the order received with its offset (and the ids that
//   came without one), each connect (`socket.recovered`, the welcoming replica, how many messages
//   it replayed), each disconnect's reason, failed attempts;
// - `close`: every socket closes.
//
// Every message of the run carries `{id}` and, stored for recovery, a trailing offset.

import { io } from "socket.io-client";

import { serve } from "./control.js";

const EVENT = "fault";
const RECONNECT_DELAY_MS = 1000; // socket.io-client's defaults, restored after a tunnel
const RECONNECT_DELAY_MAX_MS = 5000;
const RANDOMIZATION = 0.5;

class Rider {
  constructor(url, user, localAddress) {
    this.user = user;
    this.ids = [];
    this.offsets = []; // each message's offset, null without one
    this.plain = []; // ids that came without an offset: the client cannot resume after them
    this.connects = [];
    this.disconnects = [];
    this.connectErrors = 0;
    this.lastConnectError = null;
    this.welcomed = null;
    this.welcome = new Promise((resolve) => (this.welcomed = resolve));
    this.socket = io(url, {
      auth: { user_id: user },
      transports: ["websocket"],
      localAddress,
      reconnectionDelay: RECONNECT_DELAY_MS,
      reconnectionDelayMax: RECONNECT_DELAY_MAX_MS,
      randomizationFactor: RANDOMIZATION,
    });
    // `connect` tells whether the client recovered; `connected`, sent after the replay, who welcomed it.
    this.socket.on("connect", () => this.connects.push({ sid: this.socket.id, recovered: this.socket.recovered }));
    this.socket.on("connected", (welcome) => {
      const last = this.connects[this.connects.length - 1];
      if (last) Object.assign(last, { instance_id: welcome.instance_id, replayed: welcome.replayed ?? null });
      this.welcomed();
    });
    this.socket.on("disconnect", (reason) => this.disconnects.push(reason));
    this.socket.on("connect_error", (err) => {
      this.connectErrors += 1;
      this.lastConnectError = err.message;
    });
    this.socket.on(EVENT, (data, offset) => {
      this.ids.push(data.id);
      this.offsets.push(typeof offset === "string" ? offset : null);
      if (typeof offset !== "string") this.plain.push(data.id);
    });
    this.socket.io.on("reconnect", () => this.resetDelays());
  }

  cut(offlineMs) {
    this.socket.io.randomizationFactor(0).reconnectionDelay(offlineMs).reconnectionDelayMax(offlineMs);
    this.socket.io.engine.close();
  }

  resetDelays() {
    this.socket.io.randomizationFactor(RANDOMIZATION).reconnectionDelay(RECONNECT_DELAY_MS)
      .reconnectionDelayMax(RECONNECT_DELAY_MAX_MS);
  }
}

const riders = new Map();
const timers = new Set();

function withTimeout(promise, ms, what) {
  let timer;
  const expired = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)));
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

const handlers = {
  async start({ url, users, networks, timeout_ms }) {
    users.forEach((user, i) => riders.set(user, new Rider(url, user, `127.0.${1 + (i % networks)}.1`)));
    const all = [...riders.values()];
    await withTimeout(Promise.all(all.map((rider) => rider.welcome)), timeout_ms, "every rider welcomed");
    return { welcomed_by: Object.fromEntries(all.map((rider) => [rider.user, rider.connects[0].instance_id])) };
  },

  async tunnel({ plan }) {
    for (const { user, at_ms, offline_ms } of plan) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        riders.get(user).cut(offline_ms);
      }, at_ms);
      timers.add(timer);
    }
    return { planned: plan.length };
  },

  async progress() {
    let received = 0;
    let connected = 0;
    for (const rider of riders.values()) {
      received += new Set(rider.ids).size;
      if (rider.socket.connected) connected += 1;
    }
    return { received, connected, pending_cuts: timers.size };
  },

  async collect() {
    const users = {};
    for (const rider of riders.values()) {
      users[rider.user] = {
        ids: rider.ids, offsets: rider.offsets, without_offset: rider.plain, connects: rider.connects, disconnects: rider.disconnects,
        connect_errors: rider.connectErrors, last_connect_error: rider.lastConnectError,
      };
    }
    return { users };
  },

  async close() {
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
    for (const rider of riders.values()) rider.socket.close();
    return { closed: riders.size };
  },
};

await serve(handlers);
for (const timer of timers) clearTimeout(timer);
for (const rider of riders.values()) rider.socket.close();

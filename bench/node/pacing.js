// Open-loop pacing and one step of publishing, as bench/pacing.py and bench/emitter.py do it.

import { EVENT, monotonic, payload, userRoom } from "./message.js";

/** Due times, one per message: message i of a step is due at start + i / rate (bench/pacing.py). */
export class Schedule {
  constructor(rate, duration, start) {
    if (!(rate > 0) || !(duration > 0)) throw new RangeError("rate and duration must be positive");
    this.rate = rate;
    this.start = start;
    this.end = start + duration;
    this.issued = 0;
  }

  /** The due time of the next message, or null once the step is over. */
  take(now) {
    const due = this.rate === Infinity ? this.start : this.start + this.issued / this.rate;
    if (due >= this.end || now >= this.end) return null;
    this.issued += 1;
    return due;
  }
}

/**
 * A seeded choice of users (mulberry32): both Node systems get the same users for a seed.
 * Python's random.Random is not reproduced, so they are as random as the Python systems' users,
 * not the same ones.
 */
export function seededPick(users, seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return users[Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * users.length)];
  };
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/**
 * Publish `mode` ("targeted": each message to a random user; "broadcast": to all) at `rate`
 * msg/s (null: as fast as possible) for `duration` s through `publisher`, with `senders`
 * loops sharing the schedule; the reply of bench/emitter.py's `run`.
 */
export async function runStep(publisher, { mode, rate, duration, step, users, senders, seed }) {
  const schedule = new Schedule(rate === null ? Infinity : rate, duration, monotonic());
  const pick = seededPick(users, seed);
  const perUser = {};
  const failed = {};

  async function sender() {
    for (let due; (due = schedule.take(monotonic())) !== null;) {
      const seq = schedule.issued;
      const delay = due - monotonic();
      if (delay > 0) await sleep(delay);
      const data = payload(step, seq);
      const target = mode === "broadcast" ? "*" : pick();
      try {
        await (target === "*" ? publisher.toAll(EVENT, data) : publisher.toRoom(userRoom(target), EVENT, data));
        perUser[target] = (perUser[target] ?? 0) + 1;
      } catch (err) {
        failed[err.name] = (failed[err.name] ?? 0) + 1;
      }
    }
  }

  await Promise.all(Array.from({ length: senders }, sender));
  return { per_user: perUser, failed };
}

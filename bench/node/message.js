// The benchmark message, as bench/message.py makes it: the same event, fields and clock.

export const EVENT = "navigation_update";
// bench/message.py's _GUIDANCE; tests/bench/test_node.py checks the two agree.
const GUIDANCE = { station: "City Hall", line: 2, instruction: "Take the elevator at exit 4 to platform 2",
  accessible: true };

/**
 * Seconds on CLOCK_MONOTONIC, the clock of Python's time.monotonic() (libuv's hrtime reads
 * it too), so the load generator's latency is one clock minus the same clock.
 */
export function monotonic() {
  return Number(process.hrtime.bigint()) / 1e9;
}

export function userRoom(user) {
  return `user:${user}`;
}

/** The data of one message, stamped with its send time. */
export function payload(step, seq) {
  return { t: monotonic(), step, seq, ...GUIDANCE };
}

// The demo page: wires the forms to a Connection and shows what it reports.
// `?user=alice&to=bob` in the address fills the two user id fields.

import { Connection } from "./connection.js";
import { EventLog, isErrorPayload } from "./event-log.js";
import { emitToUser, fetchDevToken } from "./http.js";

const USER_ID = /^[A-Za-z0-9_.:@-]{1,128}$/;
const USER_ID_RULE = "1–128 letters, digits or _ . : @ -";
const MAX_EVENT_LENGTH = 128;
const ACTIVE_STATES = new Set(["connecting", "connected", "reconnecting"]);
const PAGE_TITLE = document.title;

const byId = (id) => document.getElementById(id);
const log = new EventLog(byId("event-log"), byId("event-log-entries"));
const userField = byId("user-id");
const jwtField = byId("jwt");
const connectButton = byId("connect-button");
const pingButton = byId("ping-button");
const connectError = byId("connect-error");
const targetField = byId("target-user");
const eventField = byId("event-name");
const dataField = byId("event-data");
const sendResult = byId("send-result");

// Whether the current connection holds a dev token, which is what authorises the emit API.
let withDevToken = false;

// An error payload, an ApiError, or (should the page itself fail) any Error.
const describe = (error) => `${error.code ?? "PAGE_ERROR"} — ${error.message}`;

// Shows (or clears, with null) the message under a field; true when the field is fine.
function fieldError(field, message) {
  const note = byId(`${field.id}-error`);
  note.textContent = message ?? "";
  note.hidden = message === null;
  if (message === null) {
    field.removeAttribute("aria-invalid");
  } else {
    field.setAttribute("aria-invalid", "true");
  }
  return message === null;
}

// Shows every message; focuses the first wrong field, whose message it then reads out.
function checkFields(checks) {
  const wrong = checks.filter(([field, message]) => !fieldError(field, message));
  wrong[0]?.[0].focus();
  return wrong.length === 0;
}

const plural = (count, noun) => `${count} ${noun}${count === 1 ? "" : "s"}`;

// What each session outcome (connection.js) reads as: [the status readout, the log entry or null].
const SESSION_TEXT = {
  new: ({ recoverable }) => [recoverable ? "New session" : "New session (not recoverable)", null],
  recovered: ({ replayed }) => {
    const text = `Recovered ${plural(replayed, "missed message")}`;
    const where = replayed > 0 ? " (above, in order)" : "";
    return [text, `${text}${where}: the session was restored, same socket id`];
  },
  resync: () => ["New session — resync", "New session — resync: the previous session could not be "
    + "restored (offline too long, or its history is gone); messages sent meanwhile are missing"],
};

function sendOutcome(kind, text) {
  sendResult.dataset.kind = kind;
  sendResult.textContent = text;
}

const view = {
  state(name, text) {
    const badge = byId("state");
    badge.dataset.state = name;
    badge.textContent = text;
    connectButton.textContent = ACTIVE_STATES.has(name) ? "Disconnect" : "Connect";
    pingButton.disabled = name !== "connected";
  },
  transport(text) {
    byId("transport").textContent = text;
  },
  replica(info) {
    byId("replica").textContent = info?.instance_id ?? "—";
    byId("user").textContent = info?.user_id ?? "—";
    byId("sid").textContent = info?.sid ?? "—";
    document.title = info ? `${info.user_id} @ ${info.instance_id} · ${PAGE_TITLE}` : PAGE_TITLE;
  },
  session(outcome) {
    const readout = byId("session");
    if (outcome === null) {
      readout.textContent = "—";
      delete readout.dataset.outcome;
      return;
    }
    const [status, entry] = SESSION_TEXT[outcome.kind](outcome);
    readout.dataset.outcome = outcome.kind;
    readout.textContent = status;
    if (entry !== null) {
      log.add({ kind: "session", text: entry });
    }
  },
  rtt(text) {
    byId("rtt").textContent = text;
  },
  attempts(text) {
    byId("attempts").textContent = text;
  },
  event(name, data, offset) {
    if (name === "error" && isErrorPayload(data)) {
      log.add({ kind: "error", event: name, text: `error event: ${describe(data)}`, data, offset });
    } else {
      log.add({ kind: "received", event: name, text: name, data, offset });
    }
  },
  info(text) {
    log.add({ kind: "info", text });
  },
  failure(error) {
    connectError.textContent = describe(error);
    connectError.hidden = false;
    log.add({ kind: "error", text: `could not connect: ${describe(error)}` });
  },
};
const connection = new Connection(view);

function tokenSource() {
  const jwt = jwtField.value.trim();
  if (jwt !== "") {
    return async () => jwt;
  }
  const userId = userField.value.trim();
  if (!checkFields([[userField, USER_ID.test(userId) ? null : `Enter a user id: ${USER_ID_RULE}.`]])) {
    return null;
  }
  return async () => (await fetchDevToken(userId)).token;
}

byId("connect-form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  if (connection.active) {
    connection.close();
    return;
  }
  connectError.hidden = true;
  const getToken = tokenSource();
  if (getToken === null) {
    return;
  }
  withDevToken = jwtField.value.trim() === "";
  view.attempts("none");
  connection.open(getToken);
});

pingButton.addEventListener("click", () => connection.ping());
byId("clear-log").addEventListener("click", () => log.clear());

// Checks the form and returns [userId, event, data], or null after showing what is wrong.
function readSendForm() {
  const userId = targetField.value.trim();
  const event = eventField.value.trim();
  let data = null;
  let dataProblem = null;
  try {
    data = dataField.value.trim() === "" ? null : JSON.parse(dataField.value);
  } catch (error) {
    dataProblem = `Data is not valid JSON: ${error.message}. Nothing was sent.`;
  }
  const valid = checkFields([
    [targetField, USER_ID.test(userId) ? null : `Enter the target's user id: ${USER_ID_RULE}.`],
    [eventField, event !== "" && event.length <= MAX_EVENT_LENGTH
      ? null : `Enter an event name of 1–${MAX_EVENT_LENGTH} characters.`],
    [dataField, dataProblem],
  ]);
  return valid ? [userId, event, data] : null;
}

byId("send-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  sendOutcome("", "");
  const fields = readSendForm();
  if (fields === null) {
    return;
  }
  if (!connection.connected || !withDevToken || connection.token === null) {
    sendOutcome("error", "Connect with a dev token first (AUTH_MODE=dev): it is what authorises sending.");
    return;
  }
  const [userId, event, data] = fields;
  try {
    const { status } = await emitToUser(connection.token, userId, event, data);
    sendOutcome("ok", status === "stored"
      ? `Stored ${event} for ${userId}: they are offline; it reaches them if they reconnect within the recovery window.`
      : `Sent ${event} to ${userId}.`);
    log.add({ kind: "sent", text: `POST /api/v1/emit: ${event} to ${userId} (${status})`, data });
  } catch (error) {
    sendOutcome("error", describe(error));
    log.add({ kind: "error", text: `emit failed: ${describe(error)}` });
  }
});

const query = new URLSearchParams(window.location.search);
userField.value = query.get("user") ?? "";
targetField.value = query.get("to") ?? "";
view.state("disconnected", "Disconnected");
view.attempts("none");
connectButton.disabled = false;

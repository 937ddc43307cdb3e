// The event log: timestamped entries, newest last, inside a role="log" live region.
// Each entry carries data-kind (received, error, info, sent, session) and, for Socket.IO
// events, data-event (and data-offset when the event came with one), so a reader (or a
// test) can tell them apart without colour.

const MAX_ENTRIES = 500;
const STICK_TO_BOTTOM_PX = 40;

function clockTime(date) {
  const time = date.toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return `${time}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

export function isErrorPayload(value) {
  return value !== null && typeof value === "object" && value.type === "error" && "code" in value;
}

export class EventLog {
  constructor(scroller, list) {
    this.scroller = scroller;
    this.list = list;
  }

  // kind: received | error | info | sent | session; event: the Socket.IO event name, if any;
  // text: one line for people; data: shown as JSON when given; offset: the connection state
  // recovery offset an event came with, shown apart from its data.
  add({ kind, text, event = null, data = undefined, offset = null }) {
    const atBottom = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight
      < STICK_TO_BOTTOM_PX;
    const now = new Date();
    const entry = document.createElement("li");
    entry.className = "entry";
    entry.dataset.kind = kind;
    if (event !== null) {
      entry.dataset.event = event;
    }
    const time = document.createElement("time");
    time.dateTime = now.toISOString();
    time.textContent = clockTime(now);
    const label = document.createElement("span");
    label.className = "kind";
    label.textContent = kind;
    const summary = document.createElement("span");
    summary.className = "text";
    summary.textContent = text;
    entry.append(time, " ", label, " ", summary);
    if (offset !== null) {
      entry.dataset.offset = offset;
      const note = document.createElement("span");
      note.className = "offset";
      note.textContent = `offset ${offset}`;
      entry.append(" ", note);
    }
    if (data !== undefined) {
      const payload = document.createElement("pre");
      payload.className = "payload";
      payload.textContent = JSON.stringify(data, null, 2);
      entry.append(payload);
    }
    this.list.append(entry);
    while (this.list.children.length > MAX_ENTRIES) {
      this.list.firstElementChild.remove();
    }
    if (atBottom) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
    }
  }

  clear() {
    this.list.replaceChildren();
  }
}

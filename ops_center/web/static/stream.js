// The live stream (GET /api/v1/stream, Server-Sent Events). EventSource cannot send an
// Authorization header, and a token must not travel in a URL: each EventSource is opened with
// a single-use ticket (POST /api/v1/stream/ticket, valid 30 s; ops_center/api/deps.py,
// get_stream_principal). A ticket works once, so the browser's own reconnects (which reuse
// the URL) are refused: on any error the stream is closed here and reopened with a new
// ticket, resuming after the last event received (?last_event_id=, as the browser's
// Last-Event-ID header would). When the stream ends for good (the access token expired, the
// server gone, a "reauth" or "resync" event) the caller reloads what it shows (onReconnect).

import { API, streamTicket } from "./api.js";

const KINDS = ["alert", "incident", "gateway", "kpi"];
const BACKOFF_MS = [500, 1000, 2000, 5000, 10000];

export class LiveStream {
  constructor({ onEvent, onState, onReconnect }) {
    this.onEvent = onEvent;
    this.onState = onState; // (connected: boolean)
    this.onReconnect = onReconnect;
    this.source = null;
    this.failures = 0;
    this.timer = null;
    this.stopped = true;
    this.opened = false;
    this.lastEventId = null;
  }

  async start() {
    this.stopped = false;
    await this.open(false);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.source?.close();
    this.source = null;
  }

  async open(reconnecting) {
    if (this.stopped) return;
    let ticket;
    try {
      ticket = await streamTicket();
    } catch {
      ticket = undefined; // the server is unreachable: try again after a pause
    }
    if (ticket === null || this.stopped) return; // no session any more
    if (ticket === undefined) {
      this.retry(true);
      return;
    }
    const params = new URLSearchParams({ ticket });
    if (this.lastEventId) params.set("last_event_id", this.lastEventId);
    const es = new EventSource(`${API}/stream?${params}`);
    this.source = es;
    es.onopen = () => {
      this.failures = 0;
      this.onState(true);
      if (reconnecting) this.onReconnect();
      reconnecting = false;
    };
    es.onerror = () => {
      this.onState(false);
      // The browser would retry with the same (used) ticket: open a new stream instead.
      this.again(es);
    };
    for (const kind of KINDS) {
      es.addEventListener(kind, (m) => {
        if (m.lastEventId) this.lastEventId = m.lastEventId;
        this.onEvent(kind, JSON.parse(m.data));
      });
    }
    es.addEventListener("reauth", () => this.again(es, 0));
    es.addEventListener("resync", () => this.onReconnect());
  }

  again(es, pauseMs) {
    es.close();
    if (this.source !== es || this.stopped) return;
    this.source = null;
    this.retry(true, pauseMs);
  }

  retry(reconnecting, pauseMs) {
    const pause = pauseMs ?? BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(reconnecting), pause);
  }
}

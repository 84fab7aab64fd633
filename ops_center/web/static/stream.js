// The live stream (GET /api/v1/stream, Server-Sent Events). EventSource cannot send an
// Authorization header, so the token goes in ?access_token= (ops_center/api/deps.py,
// get_stream_principal). While the browser reconnects by itself it resumes with
// Last-Event-ID; when the stream is closed for good (a 401 after the token expired, the
// server gone, a "reauth" or "resync" event) a new EventSource is opened with a fresh
// token, after a growing pause, and the caller reloads what it shows (onReconnect).

import { API, freshToken } from "./api.js";

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
    const token = await freshToken();
    if (!token || this.stopped) return;
    const es = new EventSource(`${API}/stream?access_token=${encodeURIComponent(token)}`);
    this.source = es;
    es.onopen = () => {
      this.failures = 0;
      this.onState(true);
      if (reconnecting) this.onReconnect();
      reconnecting = false;
    };
    es.onerror = () => {
      this.onState(false);
      // CONNECTING: the browser retries by itself (and resumes with Last-Event-ID);
      // CLOSED: it gave up, so open a new stream.
      if (es.readyState === EventSource.CLOSED) this.again(es);
      else reconnecting = true;
    };
    for (const kind of KINDS) {
      es.addEventListener(kind, (m) => this.onEvent(kind, JSON.parse(m.data)));
    }
    es.addEventListener("reauth", () => this.again(es, 0));
    es.addEventListener("resync", () => this.onReconnect());
  }

  again(es, pauseMs) {
    es.close();
    if (this.source !== es || this.stopped) return;
    this.source = null;
    const pause = pauseMs ?? BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(true), pause);
  }
}

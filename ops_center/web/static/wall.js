// Wall mode (/screen/?wall=1[&every=S]): no buttons, large type, the view rotating every S
// seconds (default 20) between the city overview (global roles) and each site the user may
// see, with the last 24 h of PM2.5, rain and street-flood depth of the site shown; an open
// emergency incident takes the screen over (and holds the rotation on its site) until it is
// acknowledged or resolved. The rotation drives the ordinary site selector, so every view is
// the one people see at their desks. <body data-wall-view="city|SITE"> says what is shown.

import * as client from "./api.js";
import { formatTime, loc, t } from "./i18n.js";
import { dataNow, drawTrend } from "./charts.js";

const $ = (id) => document.getElementById(id);
const DAY_MS = 24 * 3600 * 1000;
const EMERGENCY_POLL_MS = 5000;
const WALL_CHARTS = [
  { kind: "air_quality", metric: "pm25" },
  { kind: "rain_gauge", metric: "rain_mm_h" },
  { kind: "flood_depth", metric: "water_level_cm" },
];

export function wallRequested() {
  return new URLSearchParams(location.search).get("wall") === "1";
}

export class Wall {
  constructor({ views, siteName, metricName }) {
    const every = Number(new URLSearchParams(location.search).get("every"));
    this.everyMs = (Number.isFinite(every) && every >= 2 ? every : 20) * 1000;
    this.views = views; // () => ["", "thong-nhat", ...] ("" = the city)
    this.siteName = siteName;
    this.metricName = metricName;
    this.index = 0;
    this.emergency = null;
    this.timers = [];
    document.body.classList.add("wall");
  }

  start() {
    this.stop();
    this.show(this.views()[0] ?? "");
    this.timers.push(setInterval(() => this.next(), this.everyMs));
    this.timers.push(setInterval(() => this.checkEmergency(), EMERGENCY_POLL_MS));
    this.checkEmergency();
  }

  stop() {
    for (const id of this.timers) clearInterval(id);
    this.timers = [];
  }

  next() {
    if (this.emergency) return; // held on the emergency's site
    const views = this.views();
    if (views.length < 2) return;
    this.index = (this.index + 1) % views.length;
    this.show(views[this.index]);
  }

  show(site) {
    document.body.dataset.wallView = site || "city";
    $("wall-view-name").textContent = site ? this.siteName(site) : t("all_sites");
    const select = $("site-select");
    if (select.value !== site) {
      select.value = site;
      select.dispatchEvent(new Event("change"));
    }
    this.drawCharts(site).catch((exc) => console.warn("wall charts", exc));
  }

  async drawCharts(site) {
    const box = $("wall-charts");
    box.hidden = !site;
    if (!site) return;
    const sensors = await client.api(`/sensors?site=${encodeURIComponent(site)}`);
    if (document.body.dataset.wallView !== site) return;
    const end = dataNow();
    const start = new Date(end - DAY_MS);
    const charts = [];
    for (const want of WALL_CHARTS) {
      const s = sensors.find((x) => x.kind === want.kind);
      if (!s) continue;
      const chart = document.createElement("div");
      chart.className = "chart";
      charts.push(chart);
      drawTrend(chart, { sensor: s.id, metric: want.metric, start, end, metricName: this.metricName, height: 170 })
        .catch((exc) => console.warn("wall chart", exc));
    }
    box.replaceChildren(...charts);
  }

  async checkEmergency() {
    let open;
    try {
      open = await client.api("/incidents?state=open&limit=50");
    } catch {
      return;
    }
    const found = open.items.filter((i) => i.severity === "emergency").sort((a, b) => b.opened_at.localeCompare(a.opened_at))[0];
    const box = $("wall-emergency");
    this.emergency = found ?? null;
    box.hidden = !found;
    document.body.classList.toggle("wall-takeover", Boolean(found));
    if (!found) return;
    box.dataset.incident = found.id;
    $("wall-emergency-title").textContent = loc(found.title);
    $("wall-emergency-meta").textContent = `${t("sev_emergency")} · ${this.siteName(found.site)} · ${formatTime(found.opened_at)}`;
    if (this.views().includes(found.site) && document.body.dataset.wallView !== found.site) this.show(found.site);
  }
}

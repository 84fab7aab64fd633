// The trend views: the last 24 h of a chosen sensor and metric (the "Xu hướng" card), and on an
// incident the readings that opened it (each member alert's sensor and metric, from an hour
// before the first alert until it was resolved or now).

import { currentLang } from "./i18n.js";
import { dataNow, drawTrend } from "./charts.js";

const $ = (id) => document.getElementById(id);
const DAY_MS = 24 * 3600 * 1000;
const HOUR_MS = 3600 * 1000;

export class Trends {
  constructor({ metricName, sensorName }) {
    this.metricName = metricName;
    this.sensorName = sensorName;
    this.sensors = [];
    this.incident = null;
    $("trend-sensor").addEventListener("change", () => this.fillMetrics());
    $("trend-metric").addEventListener("change", () => this.draw());
    window.addEventListener("smartward:datanow", () => this.draw());
  }

  setSensors(sensors) {
    const keep = $("trend-sensor").value;
    this.sensors = sensors;
    const options = sensors.map((s) => {
      const o = document.createElement("option");
      o.value = s.id;
      o.textContent = this.sensorName(s);
      return o;
    });
    $("trend-sensor").replaceChildren(...options);
    const first = sensors.find((s) => s.kind === "air_quality") ?? sensors[0];
    $("trend-sensor").value = sensors.some((s) => s.id === keep) ? keep : (first?.id ?? "");
    this.fillMetrics(keep === $("trend-sensor").value);
  }

  fillMetrics(sameSensor = false) {
    const s = this.sensors.find((x) => x.id === $("trend-sensor").value);
    const keep = $("trend-metric").value;
    const metrics = s ? s.values.map((v) => v.metric) : [];
    $("trend-metric").replaceChildren(
      ...metrics.map((m) => {
        const o = document.createElement("option");
        o.value = m;
        o.textContent = this.metricName(m);
        return o;
      }),
    );
    if (sameSensor && metrics.includes(keep)) $("trend-metric").value = keep;
    this.draw();
  }

  draw() {
    const sensor = $("trend-sensor").value;
    const metric = $("trend-metric").value;
    const box = $("trend-chart");
    if (!sensor || !metric) {
      box.replaceChildren();
      return Promise.resolve(0);
    }
    const end = dataNow();
    return drawTrend(box, { sensor, metric, start: new Date(end - DAY_MS), end, metricName: this.metricName })
      .catch((exc) => console.warn("trend", exc));
  }

  // On an incident: one chart per (sensor, metric) of its alerts; redrawn only when it changes.
  showIncident(detail) {
    const box = $("detail-charts");
    const pairs = [];
    for (const a of detail?.alerts ?? []) {
      if (a.sensor && a.metric && !pairs.some((p) => p.sensor === a.sensor && p.metric === a.metric)) {
        pairs.push({ sensor: a.sensor, metric: a.metric });
      }
    }
    const key = detail ? `${detail.id}|${detail.state}|${pairs.map((p) => `${p.sensor}:${p.metric}`).join(",")}` : "";
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    $("detail-charts-title").hidden = pairs.length === 0;
    if (!pairs.length) {
      box.replaceChildren();
      return;
    }
    const opened = Math.min(...detail.alerts.map((a) => Date.parse(a.opened_at)));
    const start = new Date(opened - HOUR_MS);
    const end = detail.resolved_at ? new Date(Date.parse(detail.resolved_at) + HOUR_MS) : dataNow();
    const vi = currentLang() === "vi";
    box.replaceChildren(
      ...pairs.slice(0, 4).map((p) => {
        const chart = document.createElement("div");
        chart.className = "chart";
        const title = `${p.sensor} · ${this.metricName(p.metric)}${vi ? "" : ""}`;
        drawTrend(chart, { ...p, start, end, metricName: this.metricName, height: 140, title })
          .catch((exc) => console.warn("incident chart", exc));
        return chart;
      }),
    );
  }
}

// Trend charts (uPlot, vendored: vendor/uplot/, the global `uPlot`) of one sensor's metric from
// GET /api/v1/readings, with the limits it is judged against (GET /api/v1/limits) drawn as
// dashed lines. Each chart is a [data-chart][data-sensor][data-metric] element whose
// data-points says how many readings it drew.

import * as client from "./api.js";
import { currentLang, loc } from "./i18n.js";

const RAW_MAX_S = 3 * 3600; // longer ranges come from the rollups, in 15-minute buckets
const LIMIT_COLOURS = ["#c53030", "#b7791f", "#7b1fa2"];
const limitsCache = new Map(); // sensor -> Promise<LimitOut[]>
let dataOffsetMs = 0;

// The data's "now": the server's clock for readings (the KPIs' generated_at), which in the
// demo is the replay's clock while it catches up; charts end there, not at the browser's now.
export function setDataNow(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return;
  const before = dataOffsetMs;
  dataOffsetMs = t - Date.now();
  // A jump (the first figures, a replay): charts drawn against the old "now" are redrawn.
  if (Math.abs(dataOffsetMs - before) > 5 * 60_000) window.dispatchEvent(new Event("smartward:datanow"));
}

export function dataNow() {
  return new Date(Date.now() + dataOffsetMs);
}
const VN = { timeZone: "Asia/Ho_Chi_Minh", hour12: false };

// Axis ticks in Vietnam time, 24-hour: "14:00", and the date at midnight ("7/12").
function tick(ts) {
  const d = new Date(ts * 1000);
  const hm = d.toLocaleTimeString("vi-VN", { ...VN, hour: "2-digit", minute: "2-digit" });
  return hm === "00:00" ? d.toLocaleDateString("vi-VN", { ...VN, day: "numeric", month: "numeric" }) : hm;
}

function stamp(ts) {
  return new Date(ts * 1000).toLocaleString("vi-VN", { ...VN, day: "numeric", month: "numeric", hour: "2-digit", minute: "2-digit" });
}

function limitsOf(sensor) {
  if (!limitsCache.has(sensor)) {
    limitsCache.set(sensor, client.api(`/limits?sensor=${encodeURIComponent(sensor)}`).catch(() => []));
  }
  return limitsCache.get(sensor);
}

export async function readings(sensor, metric, start, end) {
  const range = (end - start) / 1000;
  const q = new URLSearchParams({ sensor, metric, start: start.toISOString(), end: end.toISOString() });
  if (range > RAW_MAX_S) q.set("bucket", "15m");
  return client.api(`/readings?${q}`);
}

// Draws into `box` (emptied first); resolves to the number of points drawn.
export async function drawTrend(box, { sensor, metric, start, end, metricName, height = 160, title }) {
  box.setAttribute("data-chart", "");
  box.dataset.sensor = sensor;
  box.dataset.metric = metric;
  const [series, limits] = await Promise.all([readings(sensor, metric, start, end), limitsOf(sensor)]);
  const xs = series.points.map((p) => Date.parse(p.time) / 1000);
  const ys = series.points.map((p) => p.value);
  const lines = limits.filter((l) => l.metric === metric);
  const data = [xs, ys, ...lines.map((l) => xs.map(() => l.value))];
  const vi = currentLang() === "vi";
  const name = metricName ? metricName(metric) : metric;
  const opts = {
    title: title ?? `${name} (${series.unit})`,
    width: Math.max(240, box.clientWidth || 480),
    height,
    legend: { show: true },
    // The asked range, whatever the data covers (one point would otherwise span years).
    scales: { x: { time: true, range: () => [start.getTime() / 1000, end.getTime() / 1000] } },
    axes: [{ values: (u, splits) => splits.map(tick) }, {}],
    series: [
      { label: vi ? "Thời gian" : "Time", value: (u, ts) => (ts == null ? "--" : stamp(ts)) },
      { label: name, stroke: "#0b5cad", width: 2, points: { show: xs.length < 40 } },
      ...lines.map((l, i) => ({
        label: `${loc(l.title)}${l.when ? ` (${vi ? (l.when === "day" ? "ngày" : "đêm") : l.when})` : ""}: ${l.value}`,
        stroke: LIMIT_COLOURS[i % LIMIT_COLOURS.length],
        dash: [6, 4],
        width: 1.5,
        points: { show: false },
      })),
    ],
  };
  box.replaceChildren();
  if (!xs.length) {
    box.textContent = vi ? `${name}: chưa có số liệu trong khoảng này.` : `${name}: no readings in this range.`;
  } else {
    new uPlot(opts, data, box);
  }
  box.dataset.points = String(xs.length);
  return xs.length;
}

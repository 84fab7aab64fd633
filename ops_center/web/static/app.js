// The operations screen: login, the user's sites, KPI tiles, the live incident list (from
// the overview and incident endpoints, kept current by the SSE stream), an incident's
// detail with its actions, and the sensors table. Every text a user reads goes through
// i18n.js; API texts arrive as {vi, en}. DOM is built with textContent only (no innerHTML
// of data), so nothing the API returns is interpreted as markup.

import * as client from "./api.js";
import { MESSAGES, applyStatic, currentLang, formatAge, formatTime, loc, pct, setLang, t } from "./i18n.js";
import { LiveStream } from "./stream.js";
import { IncidentAlerts } from "./incident-alert.js";
import { OpsMap } from "./map.js";
import { renderAqiTile, worstDaily } from "./aqi.js";
import { actorText, alertText, detailText } from "./words.js";
import { Trends } from "./trends.js";
import { setDataNow } from "./charts.js";
import { Wall, wallRequested } from "./wall.js";
import { Pages } from "./pages.js";

const SEVERITY_RANK = { emergency: 4, critical: 3, warning: 2, info: 1 };
const GLOBAL_ROLES = new Set(["city_leader", "admin"]);
const SENSORS_REFRESH_MS = 30_000;
const ACTION_BUTTONS = ["btn-ack", "btn-resolve", "btn-note", "btn-escalate", "btn-assign"];

const $ = (id) => document.getElementById(id);

const state = {
  me: null,
  sites: [], // SiteOut[]
  selected: "", // a site id, or "" for the whole city (global roles only)
  incidents: new Map(), // id -> IncidentOut (open or acknowledged)
  detail: null, // IncidentDetailOut
  kpi: null, // {kind: "site", ov} | {kind: "city", ov}
  sensors: [],
  kinds: new Map(), // code -> KindOut (names of sensor kinds, from /catalog)
  metrics: new Map(), // code -> MetricOut (names and units of metrics)
  netOk: true,
  streamOk: true,
};

let stream = null;
let incidentAlerts = null; // incident-alert.js: new critical/emergency incidents, seen and heard
let sensorsTimer = null;
let opsMap = null;
let trends = null;
let wall = null;
let pages = null;
const throttled = new Map();

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

// At most one call of `fn` per `ms` under `key`, the last request honoured.
function throttle(key, ms, fn) {
  const entry = throttled.get(key);
  if (entry) {
    entry.pending = true;
    return;
  }
  const slot = { pending: false };
  throttled.set(key, slot);
  fn();
  setTimeout(() => {
    throttled.delete(key);
    if (slot.pending) throttle(key, ms, fn);
  }, ms);
}

function siteName(id) {
  const site = state.sites.find((s) => s.id === id);
  return site ? loc(site.name) : id;
}

function may(permission) {
  return state.me?.permissions.includes(permission) ?? false;
}

function inView(site) {
  return state.selected === "" || state.selected === site;
}

function errorText(exc) {
  if (exc instanceof client.ApiError) {
    if (exc.status === 0) return t("network_error");
    if (exc.detail) return `${loc(exc.detail)} (${exc.status})`;
    return `${exc.code} (${exc.status})`;
  }
  return String(exc);
}

// --- connection banner --------------------------------------------------------------------------

function renderBanner() {
  $("conn-banner").hidden = state.netOk && state.streamOk && navigator.onLine;
}

function setNet(ok) {
  state.netOk = ok;
  renderBanner();
}

function setStream(ok) {
  state.streamOk = ok;
  renderBanner();
}

// --- login ----------------------------------------------------------------------------------------

function showLogin(message) {
  stream?.stop();
  stream = null;
  opsMap?.stop();
  wall?.stop();
  clearInterval(sensorsTimer);
  state.me = null;
  state.streamOk = true;
  renderBanner();
  $("screen").hidden = true;
  $("login").hidden = false;
  const err = $("login-error");
  err.hidden = !message;
  err.textContent = message ?? "";
  $("login-user").focus();
}

async function onLogin(event) {
  event.preventDefault();
  const err = $("login-error");
  err.hidden = true;
  $("login-submit").disabled = true;
  try {
    await client.login($("login-user").value.trim(), $("login-password").value);
    $("login-password").value = "";
    await enterScreen();
  } catch (exc) {
    err.textContent = errorText(exc);
    err.hidden = false;
  } finally {
    $("login-submit").disabled = false;
  }
}

// --- the screen -----------------------------------------------------------------------------------

async function enterScreen() {
  const [me, sites, catalog] = await Promise.all([
    client.api("/me"), client.api("/sites"), client.api("/catalog"),
  ]);
  state.me = me;
  state.sites = sites;
  state.kinds = new Map(catalog.kinds.map((k) => [k.code, k]));
  state.metrics = new Map(catalog.metrics.map((m) => [m.code, m]));
  const global = GLOBAL_ROLES.has(me.role);
  if (!(global && state.selected === "") && !sites.some((s) => s.id === state.selected)) {
    state.selected = global ? "" : (sites[0]?.id ?? "");
  }
  $("login").hidden = true;
  $("screen").hidden = false;
  renderHeader();
  opsMap ??= new OpsMap($("map"), { onIncident: (id) => openDetail(id) });
  opsMap.start(state.selected);
  trends ??= new Trends({
    metricName: (code) => (state.metrics.get(code) ? loc(state.metrics.get(code).name) : code),
    sensorName: (s) => `${s.name ? loc(s.name) : s.id} · ${state.kinds.get(s.kind) ? loc(state.kinds.get(s.kind).name) : s.kind}`,
  });
  await loadAll();
  pages ??= new Pages({ may, site: () => state.selected, sensors: () => state.sensors, onError: errorText });
  pages.render();
  if (wallRequested()) {
    wall ??= new Wall({
      views: () => [...(GLOBAL_ROLES.has(state.me.role) ? [""] : []), ...state.sites.map((s) => s.id)],
      siteName,
      metricName: (code) => (state.metrics.get(code) ? loc(state.metrics.get(code).name) : code),
    });
    wall.start();
  }
  stream = new LiveStream({ onEvent, onState: setStream, onReconnect: () => loadAll() });
  await stream.start();
  openLinkedIncident();
  clearInterval(sensorsTimer);
  sensorsTimer = setInterval(() => loadSensors().catch(() => {}), SENSORS_REFRESH_MS);
}

function renderHeader() {
  const me = state.me;
  $("user-name").textContent = me.name;
  $("user-role").textContent = t(`role_${me.role}`);
  $("user-role").dataset.role = me.role;
  const select = $("site-select");
  const options = [];
  if (GLOBAL_ROLES.has(me.role)) options.push(el("option", { value: "" }, t("all_sites")));
  for (const s of state.sites) options.push(el("option", { value: s.id }, loc(s.name)));
  select.replaceChildren(...options);
  select.value = state.selected;
  // The administrative unit of 2025 beside the name people know (registry `parent`).
  $("site-parent").textContent = state.sites.find((s) => s.id === state.selected)?.parent ?? "";
}

async function loadAll() {
  const jobs = [loadKpis(), loadIncidents(), loadSensors()];
  if (state.detail) jobs.push(openDetail(state.detail.id));
  const results = await Promise.allSettled(jobs);
  for (const r of results) if (r.status === "rejected") console.warn(r.reason);
}

function renderAll() {
  applyStatic();
  if (!state.me) return;
  renderHeader();
  renderKpis();
  renderIncidents();
  renderDetail();
  renderSensors();
  opsMap?.relabel();
  pages?.render();
}

// --- KPIs ---------------------------------------------------------------------------------------

async function loadKpis() {
  if (state.selected === "") {
    state.kpi = { kind: "city", ov: await client.api("/city/overview") };
  } else {
    const site = state.selected;
    const ov = await client.api(`/sites/${encodeURIComponent(site)}/overview`);
    if (site !== state.selected) return;
    state.kpi = { kind: "site", ov };
  }
  renderKpis();
}

function renderKpis() {
  const k = state.kpi;
  if (!k) return;
  const ov = k.ov;
  setDataNow(ov.generated_at);
  $("kpi-online").textContent = pct(ov.sensors_online_pct);
  $("kpi-online-sub").textContent = t("of_sensors", { online: ov.sensors_online, total: ov.sensors_total });
  let completeness = ov.data_completeness_pct;
  let aqi = ov.aqi;
  let daily = ov.aqi_daily ?? [];
  if (k.kind === "city") {
    // The city overview carries each site's own figures: completeness is their mean, the
    // AQI the worst site's (as a site's AQI is its worst station's).
    const known = ov.sites.map((s) => s.data_completeness_pct).filter((v) => v != null);
    completeness = known.length ? known.reduce((a, b) => a + b, 0) / known.length : null;
    aqi = ov.sites.map((s) => s.aqi).filter(Boolean).sort((a, b) => b.value - a.value)[0] ?? null;
    daily = worstDaily(ov.sites.map((s) => s.aqi_daily ?? []));
  }
  $("kpi-completeness").textContent = pct(completeness);
  const counts = ov.open_incidents;
  $("kpi-incidents").textContent = String(counts.total);
  $("kpi-incidents-sub").replaceChildren(
    ...["emergency", "critical", "warning", "info"].map((sev) =>
      el("span", { class: `sev sev-${sev}`, "data-severity": sev }, `${t(`sev_${sev}`)}: ${counts[sev]}`),
    ),
  );
  renderAqiTile($("kpi-aqi"), $("kpi-aqi-sub"), daily, aqi, (code) => {
    const m = state.metrics.get(code);
    return m ? loc(m.name) : code;
  });
}

// --- incidents ----------------------------------------------------------------------------------

async function loadIncidents() {
  const site = state.selected;
  const q = site ? `&site=${encodeURIComponent(site)}` : "";
  const [open, acked] = await Promise.all([
    client.api(`/incidents?state=open&limit=200${q}`),
    client.api(`/incidents?state=acknowledged&limit=200${q}`),
  ]);
  if (site !== state.selected) return;
  state.incidents = new Map([...open.items, ...acked.items].map((i) => [i.id, i]));
  renderIncidents();
}

function renderIncidents() {
  const items = [...state.incidents.values()].sort(
    (a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || b.opened_at.localeCompare(a.opened_at),
  );
  const list = $("incidents");
  list.replaceChildren(
    ...items.map((i) => {
      const li = el(
        "li",
        { class: `incident sev-${i.severity}`, "data-id": i.id, "data-state": i.state, "data-site": i.site },
        el("span", { class: `sev sev-${i.severity}` }, t(`sev_${i.severity}`)),
        el("span", { class: "title" }, loc(i.title)),
        el("span", { class: `state state-${i.state}` }, t(`state_${i.state}`)),
        el("span", { class: "where" }, `${siteName(i.site)} · ${formatTime(i.opened_at)}`),
      );
      if (state.detail?.id === i.id) li.classList.add("selected");
      li.tabIndex = 0;
      li.addEventListener("click", () => openDetail(i.id));
      li.addEventListener("keydown", (e) => e.key === "Enter" && openDetail(i.id));
      return li;
    }),
  );
  $("incident-count").textContent = `(${items.length})`;
  $("incidents-empty").hidden = items.length > 0;
}

function applyIncident(inc) {
  if (!inView(inc.site)) return;
  if (inc.state === "resolved") state.incidents.delete(inc.id);
  else state.incidents.set(inc.id, inc);
  renderIncidents();
}

// --- detail ---------------------------------------------------------------------------------------

// A notification's link (docs/notifications.md) names its incident: /screen/?incident=ID.
// Opened once, after login; an incident outside the user's scope answers 404 like any other.
function openLinkedIncident() {
  const params = new URLSearchParams(location.search);
  const id = params.get("incident");
  if (!id) return;
  params.delete("incident");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
  openDetail(id).catch(() => {});
}

async function openDetail(id) {
  try {
    const detail = await client.api(`/incidents/${encodeURIComponent(id)}`);
    const changed = state.detail?.id !== id;
    state.detail = detail;
    if (changed) {
      $("note").value = "";
      $("action-error").hidden = true;
    }
    renderDetail();
    renderIncidents();
    // On a phone the detail is below the list: bring its actions under the thumb.
    if (changed && matchMedia("(max-width: 600px)").matches) $("detail").scrollIntoView({ block: "start" });
  } catch (exc) {
    showActionError(exc);
  }
}

function renderDetail() {
  const d = state.detail;
  const box = $("detail");
  box.hidden = !d;
  if (!d) return;
  box.dataset.id = d.id;
  box.dataset.state = d.state;
  $("detail-title").textContent = loc(d.title);
  $("detail-severity").textContent = t(`sev_${d.severity}`);
  $("detail-severity").className = `sev sev-${d.severity}`;
  $("detail-state").textContent = t(`state_${d.state}`);
  $("detail-state").className = `state state-${d.state}`;
  $("detail-site").textContent = siteName(d.site);
  $("detail-opened").textContent = formatTime(d.opened_at);
  $("btn-ack").hidden = !(may("incident.acknowledge") && d.state === "open");
  $("btn-resolve").hidden = !(may("incident.resolve") && d.state !== "resolved");
  $("btn-note").hidden = !may("incident.note");
  $("btn-escalate").hidden = !(may("incident.escalate") && d.state !== "resolved" && !d.escalated_at);
  $("assign-row").hidden = !(may("incident.assign") && d.state !== "resolved");
  $("detail-assignee").textContent = d.assignee ? `· ${t("assigned_to")}: ${d.assignee}` : "";
  $("detail-escalated").textContent = d.escalated_at ? `· ${t("escalated_at")} ${formatTime(d.escalated_at)}` : "";
  $("detail-actions").hidden = ["btn-ack", "btn-resolve", "btn-note", "btn-escalate", "assign-row"].every((id) => $(id).hidden);
  $("detail-alerts").replaceChildren(
    ...d.alerts.map((a) =>
      el(
        "li",
        { class: `alert sev-${a.severity}`, "data-id": a.id },
        el("span", { class: `sev sev-${a.severity}` }, t(`sev_${a.severity}`)),
        ` ${alertText(a, loc)}`,
        ` · ${a.sensor ?? a.gateway ?? ""} · ${t(`state_${a.state}`)} · ${formatTime(a.opened_at)}`,
      ),
    ),
  );
  trends?.showIncident(d);
  $("detail-timeline").replaceChildren(
    ...d.timeline.map((e) =>
      el(
        "li",
        { "data-action": e.action, title: `${e.actor}: ${e.detail ?? ""}` },
        el("time", {}, formatTime(e.at)),
        ` ${actorText(e.actor)} — ${MESSAGES.vi[`act_${e.action}`] ? t(`act_${e.action}`) : e.action}`,
        e.detail ? `: ${detailText(e.detail)}` : "",
      ),
    ),
  );
}

function showActionError(exc) {
  const box = $("action-error");
  box.textContent = errorText(exc);
  box.hidden = false;
}

async function act(action) {
  const d = state.detail;
  if (!d) return;
  const note = $("note").value.trim();
  $("action-error").hidden = true;
  if ((action === "resolve" || action === "note") && !note) {
    showActionError(t("note_required"));
    return;
  }
  const assignee = $("assignee").value.trim();
  if (action === "assign" && !assignee) {
    showActionError(t("assignee_required"));
    return;
  }
  const path = { acknowledge: "acknowledge", resolve: "resolve", note: "notes", assign: "assign", escalate: "escalate" }[action];
  const optional = note ? { note } : {};
  const body = { acknowledge: optional, escalate: optional, assign: { assignee, ...optional } }[action] ?? { note };
  for (const b of ACTION_BUTTONS) $(b).disabled = true;
  try {
    const updated = await client.api(`/incidents/${encodeURIComponent(d.id)}/${path}`, { method: "POST", body });
    $("note").value = "";
    if (action === "assign") $("assignee").value = "";
    applyIncident(updated);
    await openDetail(d.id);
  } catch (exc) {
    showActionError(exc);
  } finally {
    for (const b of ACTION_BUTTONS) $(b).disabled = false;
  }
}

// --- sensors --------------------------------------------------------------------------------------

async function loadSensors() {
  const site = state.selected;
  const rows = await client.api(site ? `/sensors?site=${encodeURIComponent(site)}` : "/sensors");
  if (site !== state.selected) return;
  state.sensors = rows;
  renderSensors();
  trends?.setSensors(rows);
}

function renderSensors() {
  const rows = state.sensors.map((s) => {
    const newest = s.values.reduce((m, v) => (m == null || v.age_s < m ? v.age_s : m), null);
    const fresh = s.online && s.values.some((v) => v.fresh);
    const values = s.values.map((v) => {
      const m = state.metrics.get(v.metric);
      return `${m ? loc(m.name) : v.metric} ${v.value.toLocaleString(currentLang() === "vi" ? "vi-VN" : "en-GB")} ${v.unit}`;
    });
    const kind = state.kinds.get(s.kind);
    return el(
      "tr",
      { "data-id": s.id, "data-fresh": String(fresh) },
      s.name ? el("td", {}, loc(s.name), el("small", {}, ` ${s.id}`)) : el("td", {}, s.id),
      el("td", { title: s.kind }, kind ? loc(kind.name) : s.kind),
      el("td", {}, siteName(s.site)),
      el("td", {}, values.join(" · ")),
      el(
        "td",
        { class: fresh ? "fresh" : "stale" },
        `${t(!s.online ? "offline" : fresh ? "fresh" : "stale")} · ${formatAge(newest)}`,
      ),
    );
  });
  $("sensors").tBodies[0].replaceChildren(...rows);
}

// --- live events ----------------------------------------------------------------------------------

function onEvent(kind, data) {
  if (!state.me) return;
  if (kind === "incident" && data.incident) {
    incidentAlerts ??= new IncidentAlerts({ onView: openDetail, siteName });
    incidentAlerts.onIncident(data);
    applyIncident(data.incident);
    if (inView(data.incident.site)) opsMap?.applyIncident(data.incident);
    if (state.detail?.id === data.incident.id) openDetail(data.incident.id);
    if (inView(data.site)) throttle("kpi", 2000, () => loadKpis().catch(() => {}));
  } else if (kind === "alert" && data.alert) {
    if (state.detail && data.alert.incident_id === state.detail.id) openDetail(state.detail.id);
  } else if (kind === "kpi") {
    if (state.selected === data.site) {
      state.kpi = { kind: "site", ov: data };
      renderKpis();
    } else if (state.selected === "") {
      throttle("kpi", 5000, () => loadKpis().catch(() => {}));
    }
  } else if (kind === "gateway" && inView(data.site)) {
    opsMap?.refresh();
    throttle("sensors", 10_000, () => loadSensors().catch(() => {}));
  }
}

// --- wiring ---------------------------------------------------------------------------------------

function boot() {
  applyStatic();
  client.setHooks({
    unauthorized: () => showLogin(t("session_expired")),
    network: setNet,
  });
  $("login-form").addEventListener("submit", onLogin);
  $("logout").addEventListener("click", () => {
    client.logout();
    state.detail = null;
    showLogin();
  });
  for (const b of document.querySelectorAll(".lang-toggle")) {
    b.addEventListener("click", () => {
      setLang(currentLang() === "vi" ? "en" : "vi");
      renderAll();
    });
  }
  $("site-select").addEventListener("change", (e) => {
    state.selected = e.target.value;
    state.detail = null;
    renderHeader();
    renderDetail();
    opsMap?.start(state.selected);
    loadAll().then(() => pages?.render());
  });
  $("btn-ack").addEventListener("click", () => act("acknowledge"));
  $("btn-resolve").addEventListener("click", () => act("resolve"));
  $("btn-note").addEventListener("click", () => act("note"));
  $("btn-escalate").addEventListener("click", () => act("escalate"));
  $("btn-assign").addEventListener("click", () => act("assign"));
  window.addEventListener("offline", renderBanner);
  window.addEventListener("online", renderBanner);
  if (client.hasSession()) {
    enterScreen().catch((exc) => showLogin(exc.status === 401 ? t("session_expired") : errorText(exc)));
  } else {
    showLogin();
  }
}

boot();

// The map of the operations screen (GET /api/v1/map): site outlines and the streets the
// registry names (the offline base layer), or the city's own tiles when SMARTWARD_MAP_TILES is
// set; gateways as markers coloured by state, sensors as dots, air-quality stations with their
// VN_AQI, open incidents as pins that pulse by severity (click: the incident).
// DOM contract (docs/contract.md "Operations screen"): [data-map] holds [data-marker][data-gateway]
// with data-state online|stale|offline, and [data-incident-marker][data-incident] per unresolved
// incident. Leaflet is the vendored global `L` (vendor/leaflet/, loaded before the modules).

import * as client from "./api.js";
import { currentLang, formatTime, loc, t } from "./i18n.js";

const REFRESH_MS = 10_000; // time alone turns a gateway stale: polled well within 30 s
const WORDS = {
  vi: { online: "Đang kết nối", stale: "Mất tín hiệu", offline: "Ngoại tuyến", gateway: "Cổng", aqi: "VN_AQI", fresh: "có dữ liệu mới", silent: "mất tín hiệu" },
  en: { online: "Online", stale: "Silent", offline: "Offline", gateway: "Gateway", aqi: "VN_AQI", fresh: "fresh data", silent: "silent" },
};
const w = (key) => WORDS[currentLang()]?.[key] ?? WORDS.vi[key];

// Leaflet puts a string tooltip in as HTML: every text goes in as a text node instead.
function text(value) {
  const span = document.createElement("span");
  span.textContent = value;
  return span;
}

export class OpsMap {
  constructor(container, { onIncident }) {
    this.container = container;
    this.onIncident = onIncident;
    this.site = null;
    this.data = null;
    this.map = null;
    this.layers = null;
    this.gateways = new Map(); // id -> L.Marker
    this.pins = new Map(); // incident id -> L.Marker
    this.timer = null;
    this.pending = null;
    this.fitted = null;
  }

  start(site) {
    this.stop();
    this.site = site;
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    return this.refresh();
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  // At most one request in flight; a refresh asked for meanwhile runs once after it.
  async refresh() {
    if (this.pending) {
      this.again = true;
      return this.pending;
    }
    const site = this.site;
    this.pending = client
      .api(site ? `/map?site=${encodeURIComponent(site)}` : "/map")
      .then((data) => {
        if (site === this.site) this.render(data);
      })
      .catch((exc) => console.warn("map", exc))
      .finally(() => {
        this.pending = null;
        if (this.again) {
          this.again = false;
          this.refresh();
        }
      });
    return this.pending;
  }

  ensureMap(tiles) {
    if (this.map) return;
    this.map = L.map(this.container, { zoomControl: true, attributionControl: true, minZoom: 10, maxZoom: 19 });
    this.map.attributionControl.setPrefix("Leaflet");
    if (tiles) L.tileLayer(tiles.url, { attribution: tiles.attribution, maxZoom: 19 }).addTo(this.map);
    else this.container.classList.add("map-offline");
    this.layers = {
      base: L.layerGroup().addTo(this.map),
      sensors: L.layerGroup().addTo(this.map),
      gateways: L.layerGroup().addTo(this.map),
      incidents: L.layerGroup().addTo(this.map),
    };
  }

  render(data) {
    this.data = data;
    this.ensureMap(data.tiles);
    // The view first: Leaflet creates a marker's element only once the map has one.
    const key = data.sites.map((s) => s.id).join(",");
    if (this.fitted !== key && data.sites.length) {
      this.fitted = key;
      const bounds = L.latLngBounds(data.sites.flatMap((s) => s.outline));
      this.map.fitBounds(bounds, { padding: [12, 12] });
    }
    if (!this.fitted) this.map.setView([20.43, 106.17], 13);
    this.renderBase(data);
    this.renderSensors(data.sensors);
    this.renderGateways(data.gateways);
    this.renderIncidents(data.incidents);
  }

  renderBase(data) {
    const base = this.layers.base;
    base.clearLayers();
    for (const s of data.sites) {
      const poly = L.polygon(s.outline, { className: `site-outline site-${s.kind}`, weight: 2, fillOpacity: 0.06 });
      // The site's VN_AQI is its worst station's (as on the KPI tile).
      const aqi = data.sensors.filter((x) => x.site === s.id && x.aqi).map((x) => x.aqi.value);
      const parts = [loc(s.name), s.parent ? `(${s.parent})` : "", aqi.length ? `· ${w("aqi")} ${Math.max(...aqi)}` : ""];
      const label = parts.filter(Boolean).join(" ");
      base.addLayer(poly);
      // The name above the outline, clear of the markers inside it.
      const top = s.outline.reduce((a, b) => (b[0] > a[0] ? b : a));
      base.addLayer(L.tooltip({ permanent: true, direction: "top", className: "site-label" }).setLatLng(top).setContent(text(label)));
      for (const st of s.streets) {
        if (st.points.length < 2) continue;
        const line = L.polyline(st.points, { className: "street", weight: 5 });
        line.bindTooltip(text(st.name), { permanent: true, direction: "top", className: "street-label" });
        base.addLayer(line);
      }
    }
  }

  renderSensors(sensors) {
    const layer = this.layers.sensors;
    layer.clearLayers();
    for (const s of sensors) {
      if (!s.location) continue;
      const where = [s.location.lat, s.location.lon];
      const name = s.name ? loc(s.name) : s.id;
      if (s.aqi) {
        const icon = L.divIcon({ className: "aqi-badge", html: "", iconSize: [34, 22] });
        const m = L.marker(where, { icon, keyboard: false });
        m.bindTooltip(text(`${name} · ${w("aqi")} ${s.aqi.value} — ${loc(s.aqi.category)} (${s.aqi.dominant})`));
        layer.addLayer(m);
        const e = m.getElement();
        e.textContent = String(s.aqi.value);
        e.dataset.aqiStation = s.id;
        e.dataset.aqi = String(s.aqi.value);
        e.style.background = s.aqi.colour;
        e.style.color = s.aqi.value > 200 ? "#fff" : "#111";
        continue;
      }
      const dot = L.circleMarker(where, {
        radius: 4,
        className: `sensor-dot ${s.online ? "sensor-online" : "sensor-offline"}`,
      });
      dot.bindTooltip(text(`${name} · ${s.online ? w("fresh") : w("silent")}`));
      layer.addLayer(dot);
    }
  }

  renderGateways(gateways) {
    const seen = new Set();
    for (const g of gateways) {
      if (!g.location) continue;
      seen.add(g.id);
      let m = this.gateways.get(g.id);
      if (!m) {
        const icon = L.divIcon({ className: "gw-marker", html: "", iconSize: [18, 18] });
        m = L.marker([g.location.lat, g.location.lon], { icon, riseOnHover: true });
        this.layers.gateways.addLayer(m);
        const e = m.getElement();
        e.setAttribute("data-marker", "");
        e.dataset.gateway = g.id;
        this.gateways.set(g.id, m);
      }
      const e = m.getElement();
      e.dataset.state = g.state;
      e.classList.remove("state-online", "state-stale", "state-offline");
      e.classList.add(`state-${g.state}`);
      const name = g.name ? loc(g.name) : g.id;
      const seenAt = g.last_batch ?? g.last_seen;
      m.bindTooltip(text(`${w("gateway")} ${name} (${g.id}) · ${w(g.state)}${seenAt ? ` · ${formatTime(seenAt)}` : ""}`));
    }
    for (const [id, m] of this.gateways) {
      if (!seen.has(id)) {
        m.remove();
        this.gateways.delete(id);
      }
    }
  }

  renderIncidents(incidents) {
    const open = new Map(incidents.map((i) => [i.id, i]));
    for (const [id, m] of this.pins) {
      if (!open.has(id)) {
        m.remove();
        this.pins.delete(id);
      }
    }
    for (const i of incidents) this.placePin(i, [i.location.lat, i.location.lon]);
  }

  placePin(i, where) {
    let m = this.pins.get(i.id);
    if (!m) {
      const icon = L.divIcon({ className: "inc-pin", html: "", iconSize: [26, 26] });
      m = L.marker(where, { icon, zIndexOffset: 1000 });
      m.on("click", () => this.onIncident(i.id));
      this.layers.incidents.addLayer(m);
      const e = m.getElement();
      e.setAttribute("data-incident-marker", "");
      e.dataset.incident = i.id;
      this.pins.set(i.id, m);
    } else {
      m.setLatLng(where);
    }
    const e = m.getElement();
    e.dataset.severity = i.severity;
    e.dataset.state = i.state;
    e.className = e.className.replace(/\bsev-\w+|\bstate-\w+/g, "").trim();
    e.classList.add(`sev-${i.severity}`, `state-${i.state}`);
    m.bindTooltip(text(`${t(`sev_${i.severity}`)} · ${loc(i.title)}`));
  }

  // A live incident event: the pin shows (at its site until the next refresh places it at
  // its sensor) or leaves at once.
  applyIncident(inc) {
    if (!this.map || !this.data) return;
    if (inc.state === "resolved") {
      this.pins.get(inc.id)?.remove();
      this.pins.delete(inc.id);
    } else {
      const site = this.data.sites.find((s) => s.id === inc.site);
      if (!site) return;
      const where = this.pins.get(inc.id)?.getLatLng() ?? [site.location.lat, site.location.lon];
      this.placePin(inc, where);
    }
    this.refresh();
  }

  relabel() {
    if (this.data) this.render(this.data);
  }
}

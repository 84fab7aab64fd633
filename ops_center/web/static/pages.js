// The screen's pages for what else the API does, as tabs under the incidents: maintenance
// windows, street-lamp commands with their results, CSV exports, and for admins the users,
// the dead letters, the audit log and the security events. Each tab shows only when the user's role
// may use it; every text goes in as text (no HTML from data).

import * as client from "./api.js";
import { API, freshToken } from "./api.js";
import { currentLang, formatTime, loc, t } from "./i18n.js";
import { dataNow } from "./charts.js";

const $ = (id) => document.getElementById(id);
const W = {
  vi: {
    maintenance: "Bảo trì", commands: "Lệnh thiết bị", exports: "Xuất CSV", dead: "Bản tin lỗi",
    audit: "Nhật ký kiểm toán", security: "Sự kiện an ninh", scope: "Phạm vi", target: "Mã",
    until: "Đến (trống: đến khi kết thúc)", reason: "Lý do", set: "Đặt lịch", end: "Kết thúc",
    active: "đang áp dụng", lamp: "Đèn", on: "Bật", dim: "Độ sáng %", send: "Gửi lệnh",
    from: "Từ", to: "Đến", readings: "Số liệu (CSV)", incidents: "Sự cố (CSV)", none: "Không có mục nào.",
    sensor: "cảm biến", gateway: "cổng", site: "địa bàn", all: "(tất cả)",
    users: "Người dùng", user_name: "Tên đăng nhập", role: "Vai trò", sites: "Địa bàn", password: "Mật khẩu",
    add_user: "Thêm người dùng", disable: "Khóa", enable: "Mở khóa", set_password: "Đặt mật khẩu",
    disabled: "đã khóa", enabled: "hoạt động", created: "Tạo lúc", sites_hint: "(cán bộ phường, quản lý cụm)",
    new_password: "Mật khẩu mới", password_rule: "ít nhất 10 ký tự, không có khoảng trắng ở đầu/cuối", every_site: "tất cả", state: "Trạng thái",
  },
  en: {
    maintenance: "Maintenance", commands: "Device commands", exports: "CSV exports", dead: "Dead letters",
    audit: "Audit log", security: "Security events", scope: "Scope", target: "Id",
    until: "Until (empty: until ended)", reason: "Reason", set: "Set window", end: "End now",
    active: "in force", lamp: "Lamp", on: "On", dim: "Dim %", send: "Send command",
    from: "From", to: "To", readings: "Readings (CSV)", incidents: "Incidents (CSV)", none: "Nothing here.",
    sensor: "sensor", gateway: "gateway", site: "site", all: "(all)",
    users: "Users", user_name: "User name", role: "Role", sites: "Sites", password: "Password",
    add_user: "Add user", disable: "Disable", enable: "Enable", set_password: "Set password",
    disabled: "disabled", enabled: "active", created: "Created", sites_hint: "(ward staff, cluster managers)",
    new_password: "New password", password_rule: "at least 10 characters, no leading or trailing spaces", every_site: "all", state: "State",
  },
};
const w = (k) => (W[currentLang()] ?? W.vi)[k];

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

function table(headers, rows) {
  if (!rows.length) return el("p", { class: "muted" }, w("none"));
  return el(
    "table",
    { class: "sensors" },
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))),
  );
}

function localInput(date) {
  const d = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

export class Pages {
  constructor({ may, site, sensors, onError }) {
    this.may = may; // (permission) => boolean
    this.site = site; // () => selected site id or ""
    this.sensors = sensors; // () => SensorOut[]
    this.onError = onError;
    this.tab = null;
    this.box = $("ops-pages");
  }

  tabs() {
    const list = [["exports", () => this.exports()]];
    if (this.may("maintenance.set")) list.unshift(["maintenance", () => this.maintenance()]);
    if (this.may("device.command")) list.splice(1, 0, ["commands", () => this.commands()]);
    if (this.may("admin")) {
      list.push(["users", () => this.users()], ["dead", () => this.dead()], ["audit", () => this.audit()], ["security", () => this.security()]);
    }
    return list;
  }

  render() {
    const tabs = this.tabs();
    if (!tabs.some(([k]) => k === this.tab)) this.tab = tabs[0][0];
    const bar = el("div", { class: "row tabs", role: "tablist" });
    for (const [key] of tabs) {
      const b = el("button", { type: "button", class: key === this.tab ? "tab selected" : "tab link", "data-tab": key }, w(key));
      b.addEventListener("click", () => {
        this.tab = key;
        this.render();
      });
      bar.append(b);
    }
    this.body = el("div", { class: "tab-body", "data-tab-body": this.tab });
    this.box.replaceChildren(bar, this.body);
    const show = tabs.find(([k]) => k === this.tab)[1];
    Promise.resolve(show()).catch((exc) => this.fail(exc));
  }

  fail(exc) {
    this.body.append(el("p", { class: "error", role: "alert" }, this.onError(exc)));
  }

  query(extra = {}) {
    const q = new URLSearchParams(extra);
    if (this.site()) q.set("site", this.site());
    return q.toString();
  }

  async maintenance() {
    const page = await client.api(`/maintenance?${this.query({ limit: 50 })}`);
    const scope = el("select", { id: "mw-scope" }, ...["sensor", "gateway", "site"].map((s) => el("option", { value: s }, w(s))));
    const target = el("input", { id: "mw-target", maxLength: 63, placeholder: w("target") });
    const until = el("input", { id: "mw-end", type: "datetime-local" });
    const reason = el("input", { id: "mw-reason", maxLength: 2000, placeholder: w("reason") });
    const set = el("button", { type: "button", id: "mw-set" }, w("set"));
    set.addEventListener("click", async () => {
      const body = { scope: scope.value, target: target.value.trim(), reason: reason.value.trim() };
      if (until.value) body.end = new Date(until.value).toISOString();
      try {
        await client.api("/maintenance", { method: "POST", body });
        this.render();
      } catch (exc) {
        this.fail(exc);
      }
    });
    const rows = page.items.map((m) => {
      const end = el("button", { type: "button", class: "link", "data-end": m.id }, w("end"));
      end.addEventListener("click", () =>
        client.api(`/maintenance/${encodeURIComponent(m.id)}`, { method: "DELETE" }).then(() => this.render(), (e) => this.fail(e)));
      return [`${w(m.scope)} ${m.target}`, formatTime(m.start), m.end ? formatTime(m.end) : "—", m.reason, m.set_by, m.active ? w("active") : "", m.active ? end : ""];
    });
    this.body.append(
      el("div", { class: "row" }, el("label", {}, `${w("scope")} `, scope), target, el("label", {}, `${w("until")} `, until), reason, set),
      table([w("target"), w("from"), w("to"), w("reason"), "", "", ""], rows),
    );
  }

  async commands() {
    const lamps = this.sensors().filter((s) => s.kind === "street_light");
    const lamp = el("select", { id: "cmd-sensor" }, ...lamps.map((s) => el("option", { value: s.id }, s.name ? `${loc(s.name)} (${s.id})` : s.id)));
    const on = el("input", { id: "cmd-on", type: "checkbox", checked: true });
    const dim = el("input", { id: "cmd-dim", type: "number", min: 0, max: 100, value: 100 });
    const send = el("button", { type: "button", id: "cmd-send" }, w("send"));
    send.addEventListener("click", async () => {
      try {
        const args = { on: on.checked, dim_pct: Number(dim.value) };
        await client.api("/commands", { method: "POST", body: { sensor: lamp.value, name: "set_lamp", args } });
        this.render();
      } catch (exc) {
        this.fail(exc);
      }
    });
    const page = await client.api(`/commands?${this.query({ limit: 20 })}`);
    const rows = page.items.map((c) => [formatTime(c.created_at), c.sensor, `${c.name} ${JSON.stringify(c.args)}`, c.state, c.detail ?? "", c.created_by]);
    this.body.append(
      el("div", { class: "row" }, el("label", {}, `${w("lamp")} `, lamp), el("label", {}, on, ` ${w("on")}`), el("label", {}, `${w("dim")} `, dim), send),
      table(["", w("sensor"), "", "", "", ""], rows),
    );
  }

  exports() {
    const now = dataNow();
    const from = el("input", { id: "csv-start", type: "datetime-local", value: localInput(new Date(now - 24 * 3600_000)) });
    const to = el("input", { id: "csv-end", type: "datetime-local", value: localInput(now) });
    const sensor = el("select", { id: "csv-sensor" }, el("option", { value: "" }, w("all")),
      ...this.sensors().map((s) => el("option", { value: s.id }, s.id)));
    const get = (kind) => async () => {
      const q = { start: new Date(from.value).toISOString(), end: new Date(to.value).toISOString() };
      if (kind === "readings" && sensor.value) q.sensor = sensor.value;
      try {
        await this.download(`/exports/${kind}.csv?${this.query(q)}`, `${kind}.csv`);
      } catch (exc) {
        this.fail(exc);
      }
    };
    const readings = el("button", { type: "button", id: "csv-readings" }, w("readings"));
    const incidents = el("button", { type: "button", id: "csv-incidents" }, w("incidents"));
    readings.addEventListener("click", get("readings"));
    incidents.addEventListener("click", get("incidents"));
    this.body.append(el("div", { class: "row" }, el("label", {}, `${w("from")} `, from), el("label", {}, `${w("to")} `, to), sensor, readings, incidents));
  }

  // A CSV needs the bearer token, which a plain link cannot carry: fetched, then saved.
  async download(path, name) {
    const token = await freshToken();
    const r = await fetch(`${API}${path}`, { headers: { Authorization: `Bearer ${token}` } });
    if (!r.ok) throw new client.ApiError(r.status, `http_${r.status}`, null);
    const url = URL.createObjectURL(await r.blob());
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  // Users (admin): add one with a role and sites, disable / enable, set a password. The API
  // checks everything again (roles, sites, the password policy) and audits each change.
  async users() {
    const [page, sites] = await Promise.all([client.api("/users?limit=200"), client.api("/sites")]);
    const ROLES = ["ward_staff", "cluster_manager", "city_leader", "admin"];
    const name = el("input", { id: "user-name-new", maxLength: 64, autocomplete: "off", placeholder: w("user_name") });
    const role = el("select", { id: "user-role-new" }, ...ROLES.map((r) => el("option", { value: r }, t(`role_${r}`))));
    const where = el("select", { id: "user-sites-new", multiple: true, size: Math.min(4, Math.max(2, sites.length)) },
      ...sites.map((s) => el("option", { value: s.id }, `${loc(s.name)} (${s.id})`)));
    const secret = el("input", { id: "user-password-new", type: "password", maxLength: 256, autocomplete: "new-password", placeholder: w("password"), title: w("password_rule") });
    const add = el("button", { type: "button", id: "user-add" }, w("add_user"));
    const showSites = () => { where.disabled = role.value === "city_leader" || role.value === "admin"; };
    role.addEventListener("change", showSites);
    showSites();
    add.addEventListener("click", async () => {
      const body = { name: name.value.trim(), role: role.value, password: secret.value,
        sites: where.disabled ? [] : [...where.selectedOptions].map((o) => o.value) };
      try {
        await client.api("/users", { method: "POST", body });
        this.render();
      } catch (exc) {
        this.fail(exc);
      }
    });
    const act = (u, path, body) => client.api(`/users/${encodeURIComponent(u.name)}/${path}`, { method: "POST", body })
      .then(() => this.render(), (e) => this.fail(e));
    const rows = page.items.map((u) => {
      const toggle = el("button", { type: "button", class: "link", "data-user-toggle": u.name }, w(u.disabled ? "enable" : "disable"));
      toggle.addEventListener("click", () => act(u, u.disabled ? "enable" : "disable"));
      const pw = el("input", { type: "password", maxLength: 256, autocomplete: "new-password", placeholder: w("new_password"), title: w("password_rule"), "data-user-password": u.name });
      const setPw = el("button", { type: "button", class: "link", "data-user-set-password": u.name }, w("set_password"));
      setPw.addEventListener("click", () => act(u, "password", { password: pw.value }));
      const state = el("span", { class: u.disabled ? "state disabled" : "state", "data-user-state": u.name }, w(u.disabled ? "disabled" : "enabled"));
      const names = u.sites.map((id) => { const s = sites.find((x) => x.id === id); return s ? loc(s.name) : id; });
      return [u.name, t(`role_${u.role}`), names.join(", ") || w("every_site"), state, u.created ? formatTime(u.created) : "—",
        el("span", { class: "row" }, toggle, pw, setPw)];
    });
    this.body.append(
      el("div", { class: "row", "data-user-form": "" }, name, el("label", {}, `${w("role")} `, role),
        el("label", {}, `${w("sites")} ${w("sites_hint")} `, where), secret, add),
      table([w("user_name"), w("role"), w("sites"), w("state"), w("created"), ""], rows),
    );
    for (const [i, tr] of [...this.body.querySelectorAll("tbody tr")].entries()) tr.dataset.user = page.items[i].name;
  }

  async dead() {
    const page = await client.api(`/dead-letters?${this.query({ limit: 50 })}`);
    this.body.append(table(["", "topic", "", ""], page.items.map((d) => [formatTime(d.received_at), d.topic, d.reason, d.detail])));
  }

  async audit() {
    const page = await client.api("/audit?limit=50");
    this.body.append(table(["", "", "", "", ""], page.items.map((a) => [formatTime(a.at), a.actor, a.action, a.target ?? "", a.outcome])));
  }

  async security() {
    const page = await client.api(`/security-events?${this.query({ limit: 50 })}`);
    this.body.append(table(["", "", "", ""], page.items.map((e) => [formatTime(e.at), e.kind, e.client ?? e.gateway ?? "", e.detail])));
  }
}

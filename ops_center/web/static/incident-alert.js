// A new critical or emergency incident raises a visible and audible alert for the users of its
// site (issue #13). The live stream is already scoped to the user's sites, so every incident
// event that reaches this screen is one the user may see.
//
// - Visible: a banner at the top (role="alert", so screen readers announce it), one line per
//   incident, with "view" and "dismiss"; it stays until dismissed.
// - Audible: a short two-tone signal made with Web Audio (no audio file, nothing to fetch).
//   Browsers only let a page make sound after a user gesture, so the audio context is created
//   at the first click or key press (the login is one).
// - The browser's Notification API when the user allowed it and the screen is not in front;
//   the banner offers to ask for that permission (asking needs a user gesture too).
//
// No inline scripts or style attributes (a strict Content-Security-Policy): the look is in
// incident-alert.css, linked from here.

import { currentLang } from "./i18n.js";

const SERIOUS = new Set(["critical", "emergency"]);
const NEW_ACTIONS = new Set(["opened", "reopened"]);
const MAX_SHOWN = 5;
const TEXT = {
  vi: {
    critical: "NGHIÊM TRỌNG",
    emergency: "KHẨN CẤP",
    view: "Xem",
    dismiss: "Tắt",
    enable: "Bật thông báo trên máy",
    heading: "Sự cố mới",
  },
  en: {
    critical: "CRITICAL",
    emergency: "EMERGENCY",
    view: "View",
    dismiss: "Dismiss",
    enable: "Enable desktop notifications",
    heading: "New incident",
  },
};

// Created at the first gesture anywhere on the page (listening from the module's load: the
// login click comes before any incident event).
let audio = null;
function unlockAudio() {
  const Ctx = window.AudioContext ?? window.webkitAudioContext;
  if (Ctx && !audio) audio = new Ctx();
  window.removeEventListener("pointerdown", unlockAudio, true);
  window.removeEventListener("keydown", unlockAudio, true);
}
window.addEventListener("pointerdown", unlockAudio, true);
window.addEventListener("keydown", unlockAudio, true);

function text(key) {
  return (TEXT[currentLang()] ?? TEXT.vi)[key] ?? TEXT.vi[key];
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

export class IncidentAlerts {
  // onView(id): open the incident's detail; siteName(id): the site's display name.
  constructor({ onView, siteName }) {
    this.onView = onView;
    this.siteName = siteName ?? ((id) => id);
    this.seen = new Set();
    this.banner = null;
    const link = el("link", { rel: "stylesheet", href: "incident-alert.css" });
    document.head.append(link);
  }

  // The hook: every "incident" event of the live stream.
  onIncident(data) {
    const inc = data?.incident;
    if (!inc || !NEW_ACTIONS.has(data.action) || !SERIOUS.has(inc.severity)) return;
    const key = `${inc.id}:${data.action}:${data.entry_at ?? ""}`;
    if (this.seen.has(key)) return; // a replayed event after a reconnect
    this.seen.add(key);
    this.show(inc);
    this.beep(inc.severity === "emergency" ? 3 : 1);
    this.notify(inc);
  }

  show(inc) {
    if (!this.banner) {
      this.banner = el("section", { class: "incident-alert", role: "alert", "aria-live": "assertive" });
      document.body.prepend(this.banner);
    }
    const title = this.title(inc);
    const view = el("button", { type: "button", class: "incident-alert-view" }, text("view"));
    const dismiss = el("button", { type: "button", class: "incident-alert-dismiss" }, text("dismiss"));
    const line = el(
      "p",
      { class: `incident-alert-line sev-${inc.severity}`, "data-incident-alert": inc.id },
      el("strong", {}, `${text(inc.severity)} · ${text("heading")}: `),
      `${title} — ${this.siteName(inc.site)} `,
      view,
      dismiss,
    );
    view.addEventListener("click", () => this.onView(inc.id));
    dismiss.addEventListener("click", () => this.remove(line));
    this.banner.prepend(line);
    while (this.banner.querySelectorAll(".incident-alert-line").length > MAX_SHOWN) {
      this.banner.querySelector(".incident-alert-line:last-of-type")?.remove();
    }
    this.offerPermission();
  }

  title(inc) {
    const names = inc.title ?? {};
    return (currentLang() === "en" ? names.en : names.vi) ?? names.vi ?? inc.id;
  }

  remove(line) {
    line.remove();
    if (this.banner && !this.banner.querySelector(".incident-alert-line")) {
      this.banner.remove();
      this.banner = null;
    }
  }

  offerPermission() {
    if (!("Notification" in window) || Notification.permission !== "default" || !this.banner) return;
    if (this.banner.querySelector(".incident-alert-enable")) return;
    const ask = el("button", { type: "button", class: "incident-alert-enable" }, text("enable"));
    ask.addEventListener("click", () => {
      Notification.requestPermission().finally(() => ask.remove());
    });
    this.banner.append(ask);
  }

  notify(inc) {
    if (!("Notification" in window) || Notification.permission !== "granted" || !document.hidden) return;
    const title = `${text(inc.severity)}: ${this.title(inc)}`;
    const n = new Notification(title, { body: this.siteName(inc.site), tag: inc.id, requireInteraction: true });
    n.addEventListener("click", () => {
      window.focus();
      this.onView(inc.id);
      n.close();
    });
  }

  beep(times) {
    const ctx = audio;
    if (!ctx) return; // no user gesture yet: the banner still shows
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    const start = ctx.currentTime + 0.05;
    for (let k = 0; k < times * 2; k += 1) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = k % 2 === 0 ? 880 : 660;
      gain.gain.value = 0.08;
      osc.connect(gain).connect(ctx.destination);
      osc.start(start + k * 0.22);
      osc.stop(start + k * 0.22 + 0.18);
    }
  }
}

// How the screen words what the ops service records: a timeline entry's actor and detail in
// the reader's language (the store keeps "vi / en [alert id]" and actors like "rule:flood-depth"),
// an alert's value without float noise. Engineers still find the raw text in the title tooltip.

import { currentLang } from "./i18n.js";

const ACTORS = {
  vi: { rule: "Hệ thống cảnh báo", pattern: "Hệ thống", system: "Hệ thống" },
  en: { rule: "Alerting", pattern: "System", system: "System" },
};

export function actorText(actor) {
  const words = ACTORS[currentLang()] ?? ACTORS.vi;
  const kind = actor.includes(":") ? actor.split(":", 1)[0] : actor;
  return words[kind] ?? actor;
}

// "vi / en [alert al-…]" → the reader's half, without the alert id.
export function detailText(detail) {
  if (!detail) return "";
  const text = detail.replace(/\s*\[alert [^\]]*\]\s*$/, "");
  const halves = text.split(" / ");
  if (halves.length !== 2) return text;
  return currentLang() === "en" ? halves[1] : halves[0];
}

export function numberText(value) {
  return Number(value).toLocaleString(currentLang() === "vi" ? "vi-VN" : "en-GB", { maximumFractionDigits: 2 });
}

// An alert's own message carries its value and limit (rounded by the engine); only an alert
// without a message shows its value, rounded.
export function alertText(a, loc) {
  if (a.message) return loc(a.message);
  return a.value != null ? `${a.rule} = ${numberText(a.value)}` : a.rule;
}

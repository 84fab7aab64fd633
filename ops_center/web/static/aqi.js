// VN_AQI on the KPI tile: the hourly index with its QĐ 1459 colour band and category (from
// the overview), and the daily index of yesterday and today (aqi_daily; today provisional).

import { currentLang, loc } from "./i18n.js";

const WORDS = {
  vi: { yesterday: "Hôm qua", today: "Hôm nay (tạm tính)", daily: "AQI ngày" },
  en: { yesterday: "Yesterday", today: "Today (provisional)", daily: "Daily AQI" },
};

// The worst station's figure per day over one or several sites' overviews.
export function worstDaily(lists) {
  const byDay = new Map();
  for (const d of lists.flat()) {
    const cur = byDay.get(d.day);
    if (!cur || d.value > cur.value) byDay.set(d.day, d);
  }
  return [...byDay.values()].sort((a, b) => a.day.localeCompare(b.day));
}

export function dailyText(daily) {
  const w = WORDS[currentLang()] ?? WORDS.vi;
  return daily
    .map((d) => `${d.partial ? w.today : w.yesterday}: ${d.value} ${loc(d.category)}`)
    .join(" · ");
}

export function renderAqiTile(box, sub, daily, aqi, metricName) {
  box.textContent = aqi ? String(aqi.value) : "—";
  box.dataset.aqi = aqi ? String(aqi.value) : "";
  // The category colour as the tile's band: yellow text on white would not be legible.
  box.parentElement.style.borderLeftColor = aqi ? aqi.colour : "";
  const now = aqi ? `${loc(aqi.category)} · ${metricName(aqi.dominant)}` : "";
  sub.textContent = now;
  const text = dailyText(daily);
  if (text) {
    const line = document.createElement("span");
    line.className = "aqi-daily";
    line.id = "kpi-aqi-daily";
    line.textContent = text;
    sub.append(document.createElement("br"), line);
  }
}

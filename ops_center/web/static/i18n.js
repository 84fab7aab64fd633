// The screen's one message catalog: Vietnamese first, English second (docs/style.md §15).
// Texts that come from the API (titles, error details, site names) carry their own vi/en.

export const MESSAGES = {
  vi: {
    app_title: "Trung tâm điều hành phường thông minh",
    other_lang: "English",
    username: "Tên đăng nhập",
    password: "Mật khẩu",
    login: "Đăng nhập",
    logout: "Đăng xuất",
    site: "Địa bàn",
    all_sites: "Toàn thành phố",
    disconnected: "Mất kết nối tới trung tâm — đang kết nối lại…",
    session_expired: "Phiên đăng nhập đã hết hạn, vui lòng đăng nhập lại.",
    network_error: "Không kết nối được máy chủ.",
    kpi_online: "Cảm biến trực tuyến",
    kpi_completeness: "Độ đầy đủ dữ liệu",
    kpi_incidents: "Sự cố đang mở",
    kpi_aqi: "VN_AQI hiện tại",
    of_sensors: "{online}/{total} cảm biến",
    incidents: "Sự cố",
    no_incidents: "Không có sự cố đang mở.",
    member_alerts: "Cảnh báo thành phần",
    timeline: "Diễn biến",
    acknowledge: "Tiếp nhận",
    resolve: "Đóng sự cố",
    add_note: "Ghi chú",
    escalate: "Báo cáo lên cấp trên",
    assign: "Phân công",
    assignee_placeholder: "Tên đăng nhập người được giao",
    assignee_required: "Cần nhập người được giao.",
    assigned_to: "Giao cho",
    escalated_at: "đã báo cáo lên cấp trên lúc",
    note_placeholder: "Ghi chú (bắt buộc khi đóng sự cố)",
    note_required: "Cần nhập ghi chú.",
    sensors: "Cảm biến",
    sensor: "Cảm biến",
    kind: "Loại",
    values: "Giá trị mới nhất",
    freshness: "Độ mới",
    fresh: "mới",
    stale: "cũ",
    offline: "mất tín hiệu",
    ago: "{age} trước",
    never: "chưa có dữ liệu",
    role_ward_staff: "Cán bộ phường",
    role_cluster_manager: "Quản lý cụm",
    role_city_leader: "Lãnh đạo thành phố",
    role_admin: "Quản trị viên",
    sev_info: "Thông tin",
    sev_warning: "Cảnh báo",
    sev_critical: "Nghiêm trọng",
    sev_emergency: "Khẩn cấp",
    state_open: "Mới mở",
    state_acknowledged: "Đã tiếp nhận",
    state_resolved: "Đã đóng",
    state_active: "Đang cảnh báo",
    trends: "Xu hướng 24 giờ",
    wall_emergency: "SỰ CỐ KHẨN CẤP",
    opening_readings: "Số liệu dẫn tới sự cố",
    state_cleared: "Đã hết",
    act_opened: "mở sự cố",
    act_alert_added: "thêm cảnh báo",
    act_alert_updated: "cập nhật cảnh báo",
    act_alert_cleared: "cảnh báo đã hết",
    act_kind_changed: "đổi loại sự cố",
    act_acknowledged: "tiếp nhận",
    act_resolved: "đóng sự cố",
    act_reopened: "mở lại",
    act_escalated: "báo cáo lên cấp trên",
    act_merged: "gộp sự cố",
    act_annotated: "ghi chú",
    act_assigned: "phân công",
    act_notified: "đã gửi thông báo",
    act_notify_failed: "gửi thông báo thất bại",
  },
  en: {
    app_title: "Smart-ward operations center",
    other_lang: "Tiếng Việt",
    username: "User name",
    password: "Password",
    login: "Log in",
    logout: "Log out",
    site: "Site",
    all_sites: "Whole city",
    disconnected: "Disconnected from the operations center — reconnecting…",
    session_expired: "Your session has expired, please log in again.",
    network_error: "Cannot reach the server.",
    kpi_online: "Sensors online",
    kpi_completeness: "Data completeness",
    kpi_incidents: "Open incidents",
    kpi_aqi: "VN_AQI now",
    of_sensors: "{online}/{total} sensors",
    incidents: "Incidents",
    no_incidents: "No open incidents.",
    member_alerts: "Member alerts",
    timeline: "Timeline",
    acknowledge: "Acknowledge",
    resolve: "Resolve",
    add_note: "Add note",
    escalate: "Escalate",
    assign: "Assign",
    assignee_placeholder: "User name of the assignee",
    assignee_required: "An assignee is required.",
    assigned_to: "Assigned to",
    escalated_at: "escalated at",
    note_placeholder: "Note (required to resolve)",
    note_required: "A note is required.",
    sensors: "Sensors",
    sensor: "Sensor",
    kind: "Kind",
    values: "Latest values",
    freshness: "Freshness",
    fresh: "fresh",
    stale: "stale",
    offline: "offline",
    ago: "{age} ago",
    never: "no data yet",
    role_ward_staff: "Ward staff",
    role_cluster_manager: "Cluster manager",
    role_city_leader: "City leader",
    role_admin: "Administrator",
    sev_info: "Info",
    sev_warning: "Warning",
    sev_critical: "Critical",
    sev_emergency: "Emergency",
    state_open: "Open",
    state_acknowledged: "Acknowledged",
    state_resolved: "Resolved",
    state_active: "Active",
    trends: "Last 24 hours",
    wall_emergency: "EMERGENCY",
    opening_readings: "Readings that opened the incident",
    state_cleared: "Cleared",
    act_opened: "opened",
    act_alert_added: "alert added",
    act_alert_updated: "alert updated",
    act_alert_cleared: "alert cleared",
    act_kind_changed: "kind changed",
    act_acknowledged: "acknowledged",
    act_resolved: "resolved",
    act_reopened: "reopened",
    act_escalated: "escalated",
    act_merged: "merged",
    act_annotated: "note",
    act_assigned: "assigned",
    act_notified: "notified",
    act_notify_failed: "notification failed",
  },
};

const LANG_KEY = "smartward.lang";
let lang = sessionStorage.getItem(LANG_KEY) === "en" ? "en" : "vi";

export function currentLang() {
  return lang;
}

export function setLang(next) {
  lang = next === "en" ? "en" : "vi";
  sessionStorage.setItem(LANG_KEY, lang);
  document.documentElement.lang = lang;
}

export function t(key, params = {}) {
  const text = MESSAGES[lang][key] ?? MESSAGES.vi[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
}

// A {vi, en} object from the API, in the current language.
export function loc(value) {
  if (value == null) return "";
  if (typeof value === "string") return value;
  return value[lang] || value.vi || "";
}

// Static texts of the page: elements marked with data-i18n / data-i18n-placeholder.
export function applyStatic(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  document.title = t("app_title");
}

export function formatTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB", {
    timeZone: "Asia/Ho_Chi_Minh",
    hour12: false,
  });
}

export function formatAge(seconds) {
  if (seconds == null) return t("never");
  const s = Math.max(0, Math.round(seconds));
  const age = s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} ${lang === "vi" ? "phút" : "min"}`
    : `${Math.round(s / 3600)} ${lang === "vi" ? "giờ" : "h"}`;
  return t("ago", { age });
}

export function pct(value) {
  return value == null ? "—" : `${value.toLocaleString(lang === "vi" ? "vi-VN" : "en-GB", { maximumFractionDigits: 1 })} %`;
}

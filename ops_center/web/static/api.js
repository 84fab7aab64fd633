// The API client of the screen: the session (tokens in sessionStorage, never localStorage:
// they end with the tab), one fetch wrapper that refreshes an expired access token once
// through POST /auth/refresh, and errors that carry the API's own {vi, en} message.

export const API = "/api/v1";
const SESSION_KEY = "smartward.session";

export class ApiError extends Error {
  // status 0: the network (the server could not be reached).
  constructor(status, code, detail) {
    super(code);
    this.status = status;
    this.code = code;
    this.detail = detail; // {vi, en} or null
  }
}

let session = readSession();
let onUnauthorized = () => {};
let onNetwork = () => {};

function readSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

function saveSession(tokens) {
  session = tokens && {
    access: tokens.access_token,
    refresh: tokens.refresh_token,
    expiresAt: Date.now() + tokens.expires_in * 1000,
  };
  if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(SESSION_KEY);
}

export function hasSession() {
  return session != null;
}

export function accessToken() {
  return session ? session.access : null;
}

// Ends the session on the server too (POST /auth/logout revokes its refresh token and its
// access tokens); the local copy is dropped at once, whatever the server answers.
export function logout() {
  const token = accessToken();
  saveSession(null);
  if (token) {
    send(`${API}/auth/logout`, { method: "POST", headers: { Authorization: `Bearer ${token}` } }).catch(
      () => {},
    );
  }
}

// hooks: unauthorized() when the session cannot be renewed; network(ok) on reachability changes.
export function setHooks({ unauthorized, network }) {
  onUnauthorized = unauthorized;
  onNetwork = network;
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return new ApiError(response.status, body?.error ?? `http_${response.status}`, body?.detail ?? null);
}

async function send(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (exc) {
    onNetwork(false);
    throw new ApiError(0, "network", null);
  }
  onNetwork(true);
  return response;
}

export async function login(username, password) {
  const form = new URLSearchParams({ username, password });
  const r = await send(`${API}/auth/token`, { method: "POST", body: form });
  if (!r.ok) throw await errorOf(r);
  saveSession(await r.json());
}

let refreshing = null;

// A new access token from the refresh token; false when the session is over.
export function refresh() {
  if (!session) return Promise.resolve(false);
  refreshing ??= (async () => {
    try {
      const r = await send(`${API}/auth/refresh`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: session.refresh }),
      });
      if (!r.ok) {
        if (r.status === 401) saveSession(null);
        return false;
      }
      saveSession(await r.json());
      return true;
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

// The access token, refreshed first when it expires within 30 s.
export async function freshToken() {
  if (session && session.expiresAt - Date.now() < 30_000) await refresh();
  return accessToken();
}

// A single-use ticket for the live stream (POST /stream/ticket, valid 30 s): EventSource cannot
// send an Authorization header, and a token in a URL would end up in logs. Null without a session.
export async function streamTicket() {
  try {
    const { ticket } = await api("/stream/ticket", { method: "POST" });
    return ticket;
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) return null;
    throw exc;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const token = await freshToken();
    if (!token) break;
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await send(`${API}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 401 && attempt === 0 && (await refresh())) continue;
    if (r.status === 401) break;
    if (!r.ok) throw await errorOf(r);
    return r.json();
  }
  saveSession(null);
  onUnauthorized();
  throw new ApiError(401, "not_authenticated", null);
}

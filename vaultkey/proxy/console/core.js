// The console's shared helpers: the token, API calls, and safe DOM building.
//
// Safety rules every view follows (docs/SECURITY.md, "The operator console"):
// * data from the API (key names, labels, messages) only ever enters the page
//   through textContent (el() and text()); nothing is parsed as HTML;
// * the token lives in sessionStorage and is sent as "Authorization: Bearer" on
//   fetch(), never in a URL and never in a cookie;
// * the console handles no value: envelopes in watch events are dropped unread.

export const TOKEN_KEY = "vaultkey.console.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, code, message, hint) {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
  }
}

// "/a/b c/" -> "/a/b%20c/": each segment percent-encoded, the "/" kept.
export function encodePath(path) {
  return path.split("/").map(encodeURIComponent).join("/");
}

export function apiUrl(route, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${route}?${text}` : route;
}

export function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// GET a /v1 route; resolves to its JSON, or throws ApiError with the server's message.
export async function api(route, params, options) {
  const response = await fetch(apiUrl(route, params), {
    headers: { Accept: "application/json", ...authHeaders() },
    cache: "no-store",
    credentials: "omit",
    signal: options && options.signal,
  });
  return readAnswer(response);
}

export async function readAnswer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_err) {
    body = null;
  }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(response.status, error.code || "http_error",
      error.message || `HTTP ${response.status}`, error.hint || null);
  }
  return body;
}

// Build an element; text and attributes are set as text, never parsed as HTML.
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "cls") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (name === "data") for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    else if (/^on/i.test(name) || name === "style") throw new Error(`refused attribute ${name}`);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function errorBox(err) {
  const status = err instanceof ApiError ? `${err.status} ${err.code}: ` : "";
  return el("div", { cls: "error", role: "alert", data: { status: err.status || 0 } },
    el("strong", { text: status }), err.message || String(err),
    err.hint ? el("div", { cls: "hint", text: `hint: ${err.hint}` }) : null);
}

export function verdictBadge(verdict) {
  const name = verdict || "unknown";
  return el("span", { cls: `verdict v-${name.replace(/[^a-z-]/g, "")}`, text: name,
    data: { verdict: name } });
}

export function fmtTime(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  return new Date(seconds * 1000).toISOString().replace(".000Z", "Z").replace("T", " ");
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  return n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`;
}

export function fmtLeft(seconds) {
  if (seconds === null || seconds === undefined) return "?";
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

// Run async jobs at most `width` at a time.
export async function pool(jobs, width) {
  const results = [];
  let next = 0;
  async function worker() {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, jobs.length) }, worker));
  return results;
}

// A labelled input row for the views' small forms.
export function field(label, input) {
  return el("label", { cls: "field" }, el("span", { text: label }), input);
}

// Mark a view as fully rendered (the browser tests and the benchmark wait for it).
// readyAt: milliseconds since the navigation started (scripts/bench_console.py reads it).
export function ready(root) {
  root.dataset.readyAt = performance.now().toFixed(1);
  root.dataset.ready = "1";
}

// "1 key", "3 keys".
export function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

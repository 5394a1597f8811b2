// Who can decrypt (GET /v1/access), Policy explain (GET /v1/explain, /v1/rules) and
// Registrations (coverage with leases, then the SSE watch stream read with fetch()).

import {
  ApiError, api, apiUrl, authHeaders, clear, el, encodePath, errorBox, field, fmtLeft, plural,
  pool, readAnswer, ready, verdictBadge,
} from "./core.js";
import { findRoots } from "./keyspace.js";

const CAPS = ["read", "list", "write", "delete", "watch"];

function form(id, fields, label, onSubmit) {
  const node = el("form", { cls: "toolbar", id, autocomplete: "off" }, fields,
    el("button", { type: "submit", text: label }));
  node.addEventListener("submit", (event) => {
    event.preventDefault();
    onSubmit();
  });
  return node;
}

async function run(root, out, job) {
  delete root.dataset.ready;
  clear(out).append(el("p", { cls: "loading", text: "loading…" }));
  try {
    const nodes = await job();
    clear(out).append(...nodes);
  } catch (err) {
    clear(out).append(errorBox(err));
  }
  ready(root);
}

// ---- Who can decrypt ----------------------------------------------------------------------

export function mountAccess(root, session) {
  const input = el("input", { type: "text", id: "acc-path", spellcheck: "false",
    placeholder: "/app/db (a key) or /app/ (a prefix)", value: session.pending.path || "" });
  const out = el("div", { id: "acc-out" });
  const show = () => run(root, out, () => accessTable(input.value.trim()));
  root.append(el("p", { cls: "help", text: "For a key or a prefix: what each group may do "
      + "(and the rule that decides it), and whether the envelopes' stanzas let it decrypt. "
      + "A group that may read but cannot decrypt, or can decrypt but may not read, is a "
      + "mismatch, shown with the command that fixes it." }),
  form("acc-form", [field("Path or prefix", input)], "Show", show), out);
  if (input.value) show();
  else ready(root);
}

async function accessTable(path) {
  if (!path.startsWith("/")) throw new ApiError(0, "usage", "a path starts with '/'", null);
  const body = await api(`/v1/access${encodePath(path)}`);
  const isPrefix = body.path.endsWith("/");
  const head = ["group", ...CAPS, "can decrypt", "mismatch", "fix"];
  const rows = body.groups.map((g) => el("tr", { cls: g.mismatch ? "mismatch" : null,
    data: { group: g.group, mismatch: g.mismatch || "none" } },
  el("th", { text: g.group }),
  CAPS.map((cap) => el("td", { cls: g[cap].allowed ? "allow" : "deny", data: { cap } },
    el("span", { cls: "mark", text: g[cap].allowed ? "✓ yes" : "✗ no" }),
    el("span", { cls: "rule", text: g[cap].rule || "default deny" }))),
  el("td", { cls: "decrypt", text: isPrefix
    ? `${g.decrypt_count[0]} of ${g.decrypt_count[1]} keys` : (g.can_decrypt ? "yes" : "no") }),
  el("td", {}, g.mismatch ? verdictBadge(g.mismatch) : "—"),
  el("td", {}, g.fix ? el("code", { cls: "fix", text: g.fix }) : "—")));
  return [
    el("p", { cls: "status", text: `${body.path}: ${isPrefix ? `${plural(body.keys, "key")} (first page)` : "one key"}, `
      + `at revision ${body.revision}` }),
    el("table", { cls: "grid matrix", id: "acc-table" },
      el("thead", {}, el("tr", {}, head.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows)),
  ];
}

// ---- Policy explain ---------------------------------------------------------------------------

export function mountExplain(root, session) {
  const group = el("select", { id: "ex-group" });
  const path = el("input", { type: "text", id: "ex-path", spellcheck: "false",
    placeholder: "/app/db or /app/", value: session.pending.path || "" });
  const cap = el("select", { id: "ex-cap" }, CAPS.map((c) => el("option", { value: c, text: c })));
  const out = el("div", { id: "ex-out" });
  const rulesBox = el("div", { id: "ex-rules" });
  let policies = [];
  const explain = () => run(root, out, async () => {
    const body = await api("/v1/explain", { group: group.value, path: path.value.trim(),
      cap: cap.value });
    showRules(rulesBox, policies, group.value, body.rule && body.rule.where);
    return decisionBox(body);
  });
  root.append(form("ex-form", [field("Group", group), field("Path", path), field("Capability", cap)],
    "Explain", explain), out, rulesBox);
  group.addEventListener("change", () => showRules(rulesBox, policies, group.value, null));
  (async () => {
    try {
      policies = (await api("/v1/rules")).groups;
      for (const p of policies) group.append(el("option", { value: p.group, text: p.group }));
      if (session.who.kind !== "admin") group.disabled = true; // a group token: its own only
      showRules(rulesBox, policies, group.value, null);
    } catch (err) {
      out.append(errorBox(err));
    }
    ready(root);
  })();
}

function decisionBox(body) {
  const rule = body.rule;
  return [el("div", { cls: `decision ${body.decision}`, id: "ex-decision", data: { decision: body.decision } },
    el("span", { cls: "big", text: body.decision.toUpperCase() }), " ",
    el("span", { text: `${body.group} · ${body.capability} · ${body.path}` })),
  el("p", { id: "ex-rule" }, rule
    ? ["deciding rule: ", el("code", { cls: "where", text: rule.where }), " ",
      `${rule.kind} ${rule.path}`, rule.comment ? ` (${rule.comment})` : ""]
    : "no rule applies: default deny"),
  el("p", { cls: "explanation", text: body.explanation })];
}

function showRules(box, policies, groupName, where) {
  clear(box);
  const policy = policies.find((p) => p.group === groupName);
  if (!policy) return;
  box.append(el("h3", { text: `Rules of group ${policy.group} (${policy.source})` }),
    policy.description ? el("p", { cls: "help", text: policy.description }) : null,
    el("table", { cls: "grid" },
      el("thead", {}, el("tr", {}, ["where", "kind", "path", "allow", "deny"].map((h) => el("th", { text: h })))),
      el("tbody", {}, policy.rules.map((r) => el("tr", { cls: r.where === where ? "deciding" : null },
        el("td", {}, el("code", { text: r.where })), el("td", { text: r.kind }),
        el("td", {}, el("code", { text: r.path })), el("td", { text: r.allow.join(", ") }),
        el("td", { text: r.deny.join(", ") }))))));
}

// ---- Registrations -----------------------------------------------------------------------------

export function mountRegistrations(root, session) {
  const input = el("input", { type: "text", id: "reg-prefix", spellcheck: "false",
    placeholder: "/services/", value: session.pending.prefix || "" });
  const status = el("p", { cls: "status", id: "reg-status" });
  const table = el("tbody", { id: "reg-rows" });
  const out = el("div", { id: "reg-out" }, el("p", { cls: "status", id: "reg-count" }),
    el("table", { cls: "grid" },
    el("thead", {}, el("tr", {}, ["key", "lease", "time left", "revision"].map((h) => el("th", { text: h })))),
    table));
  const live = { controller: null, timers: [], regs: new Map() };
  const stop = () => {
    if (live.controller) live.controller.abort();
    live.timers.forEach(clearInterval);
    live.timers = [];
  };
  const start = async () => {
    stop();
    delete root.dataset.ready;
    live.regs.clear();
    clear(table);
    live.controller = new AbortController();
    try {
      await follow(normalise(input.value.trim()), live, status, table, live.controller.signal, root);
    } catch (err) {
      if (!live.controller.signal.aborted) status.replaceChildren(errorBox(err));
      ready(root);
    }
  };
  root.append(el("p", { cls: "help", text: "Keys with a lease (TTL registrations) under a prefix, "
      + "with the time left on each lease, kept current by the watch stream." }),
  form("reg-form", [field("Prefix", input)], "Follow", start), status, out);
  (async () => {
    if (!input.value && session.who.kind !== "admin") {
      try {
        input.value = (await findRoots(session)).roots[0] || "";
      } catch (_err) { /* the form stays empty */ }
    }
    if (input.value) start();
    else ready(root);
  })();
  return stop;
}

function normalise(prefix) {
  const p = prefix.startsWith("/") ? prefix : `/${prefix}`;
  return p.endsWith("/") ? p : `${p}/`;
}

async function follow(prefix, live, status, table, signal, root) {
  let revision = 0;
  let after = null;
  do { // what has a lease now (and its TTL), then every change after that revision
    const body = await api(`/v1/coverage${encodePath(prefix)}`, { limit: 1000, leases: "true", after },
      { signal });
    revision = Math.max(revision, body.revision);
    for (const row of body.keys.filter((r) => r.lease)) {
      live.regs.set(row.path, { lease: row.lease, ttl: row.ttl, at: Date.now(), revision: row.revision });
    }
    after = body.next;
  } while (after);
  draw(live, table);
  status.textContent = `${plural(live.regs.size, "registration")} under ${prefix}; connecting to the watch…`;
  live.timers.push(setInterval(() => tick(live, table), 1000));
  live.timers.push(setInterval(() => refreshTtls(live, table, signal), 5000));
  ready(root);
  await watch(prefix, revision, live, status, table, signal);
}

async function watch(prefix, since, live, status, table, signal) {
  let last = since;
  while (!signal.aborted) {
    try {
      const response = await fetch(apiUrl(`/v1/watch${encodePath(prefix)}`, { since: last }), {
        headers: { Accept: "text/event-stream", ...authHeaders() },
        cache: "no-store", credentials: "omit", signal });
      if (!response.ok) await readAnswer(response); // throws the server's error
      await readEvents(response.body, (event) => {
        if (event.id) last = event.id;
        onEvent(event, prefix, live, status, table, signal);
      });
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status !== 429 && err.status < 500) {
        status.replaceChildren("Not live: ", errorBox(err));
        return;
      }
      status.textContent = `watch interrupted (${err.message}); reconnecting…`;
    }
    await new Promise((resolve) => { setTimeout(resolve, 1000); });
  }
}

function onEvent(event, prefix, live, status, table, signal) {
  const data = event.data;
  if (event.type === "put") {
    delete data.envelope; // ciphertext the console has no use for: dropped unread
    if (data.lease) {
      live.regs.set(data.path, { lease: data.lease, ttl: null, at: Date.now(), revision: data.revision });
      fetchTtl(live, data.path, signal).then(() => draw(live, table));
    } else live.regs.delete(data.path);
    draw(live, table);
  } else if (event.type === "delete") {
    live.regs.delete(data.path);
    draw(live, table);
  } else if (event.type === "bookmark") {
    live.revision = data.revision;
    status.textContent = `live: watching ${prefix}, at revision ${data.revision}`;
  } else if (event.type === "resync") {
    status.textContent = `the watch lost events (${data.reason}); press Follow to reload`;
    throw new ApiError(0, "resync", `watch resync: ${data.reason}`, "press Follow to reload");
  } else if (event.type === "revoked") {
    throw new ApiError(401, "unauthenticated", "the token was revoked or has expired", null);
  }
}

// Parse Server-Sent Events from a fetch() body: "event:", "data:" and "id:" lines, an empty
// line ends an event. (EventSource cannot send the Authorization header.)
export async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = { type: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut = buffer.indexOf("\n");
    while (cut >= 0) {
      const line = buffer.slice(0, cut).replace(/\r$/, "");
      buffer = buffer.slice(cut + 1);
      cut = buffer.indexOf("\n");
      if (line === "") {
        if (event.data.length) onEvent({ type: event.type, id: event.id, data: JSON.parse(event.data.join("\n")) });
        event = { type: "message", data: [], id: null };
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "event") event.type = text;
        else if (name === "data") event.data.push(text);
        else if (name === "id") event.id = text;
      }
    }
  }
}

async function fetchTtl(live, path, signal) {
  try {
    const body = await api(`/v1/coverage${encodePath(path)}`, { leases: "true" }, { signal });
    const row = body.keys[0];
    const reg = live.regs.get(path);
    if (reg && row) Object.assign(reg, { ttl: row.ttl, at: Date.now(), lease: row.lease });
  } catch (_err) { /* gone meanwhile: its delete event follows */ }
}

function refreshTtls(live, table, signal) {
  const paths = [...live.regs.keys()].slice(0, 200); // keep-alives move no watch event
  pool(paths.map((p) => () => fetchTtl(live, p, signal)), 4).then(() => draw(live, table));
}

function draw(live, table) {
  const count = document.getElementById("reg-count");
  if (count) count.textContent = plural(live.regs.size, "registration");
  const rows = [...live.regs.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  table.replaceChildren(...rows.map(([path, reg]) => el("tr", { data: { path } },
    el("td", {}, el("code", { text: path })), el("td", {}, el("code", { text: reg.lease })),
    el("td", { cls: "ttl", text: left(reg) }), el("td", { text: reg.revision }))));
  if (!rows.length) table.append(el("tr", {}, el("td", { colspan: 4, text: "(no key with a lease)" })));
}

function left(reg) {
  return reg.ttl === null ? "…" : fmtLeft(reg.ttl - (Date.now() - reg.at) / 1000);
}

function tick(live, table) {
  for (const tr of table.querySelectorAll("tr[data-path]")) {
    const reg = live.regs.get(tr.dataset.path);
    if (reg) tr.querySelector(".ttl").textContent = left(reg);
  }
}

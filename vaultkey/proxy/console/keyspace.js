// Keyspace: a tree of what the token may list, one level at a time, each key with its
// metadata and its coverage verdict; "only problems" scans the coverage report instead.
//
// A group token's tree comes from listings (GET /v1/kv/<prefix>?list=true: names only),
// its verdicts from GET /v1/coverage/<prefix> for just the keys on screen (after= and
// limit= select them); the admin token, which may not list data, pages through the
// coverage report (headers only) for both.

import {
  api, clear, el, encodePath, errorBox, field, fmtBytes, fmtLeft, plural, pool, ready,
  verdictBadge,
} from "./core.js";

const PAGE = 100; // children shown per folder, then "show more"
const ADMIN_PAGE = 5000; // coverage keys per request when the admin token builds the tree
const SCAN_PAGE = 1000; // coverage keys per request when scanning for problems
const MAX_PAGES = 100; // pages read for one folder or one scan (500,000 / 100,000 keys)

export function mount(root, session) {
  const ctx = { session, rows: new Map(), alive: true, onlyProblems: false };
  const prefixInput = el("input", { type: "text", id: "ks-prefix", placeholder: "/app/",
    spellcheck: "false", value: session.pending.prefix || "" });
  const problems = el("input", { type: "checkbox", id: "ks-problems" });
  const tree = el("div", { id: "ks-tree" });
  const status = el("p", { cls: "status", id: "ks-status" });
  const form = el("form", { cls: "toolbar", autocomplete: "off" },
    field("Open prefix", prefixInput), el("button", { type: "submit", text: "Open" }),
    el("label", { cls: "check" }, problems, " Only problems"),
    el("button", { type: "button", id: "ks-reload", text: "Reload",
      on: { click: () => start() } }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start();
  });
  problems.addEventListener("change", () => start());
  root.append(form, legend(), status, tree);

  async function start() {
    delete root.dataset.ready;
    ctx.rows.clear();
    clear(tree);
    try {
      const wanted = prefixInput.value.trim();
      const { roots, patterns } = wanted
        ? { roots: [normalise(wanted)], patterns: [] } : await findRoots(session);
      if (!ctx.alive) return;
      if (problems.checked) await scanProblems(ctx, tree, status, roots);
      else await showRoots(ctx, tree, status, roots, patterns);
    } catch (err) {
      tree.append(errorBox(err));
    }
    if (ctx.alive) ready(root);
  }
  start();
  return () => {
    ctx.alive = false;
  };
}

function normalise(prefix) {
  const withSlash = prefix.endsWith("/") ? prefix : `${prefix}/`;
  return withSlash.startsWith("/") ? withSlash : `/${withSlash}`;
}

function legend() {
  const verdicts = ["ok", "missing-reader", "stale-recipient", "unknown-key",
    "unsigned-where-required", "foreign"];
  return el("p", { cls: "legend" }, "Verdicts: ", verdicts.map((v) => [verdictBadge(v), " "]));
}

// Where the tree starts: "/" for the admin token; for a group token, the prefixes its
// own policy lets it list (from GET /v1/rules), without those inside another.
export async function findRoots(session) {
  if (session.who.kind === "admin") return { roots: ["/"], patterns: [] };
  const body = await api("/v1/rules");
  const listable = body.groups.flatMap((g) => g.rules)
    .filter((r) => r.kind === "prefix" && r.allow.includes("list"));
  const literal = listable.filter((r) => !r.path.split("/").includes("+")).map((r) => r.path);
  const roots = [...new Set(literal)].filter(
    (p) => !literal.some((q) => q !== p && p.startsWith(q))).sort();
  const patterns = listable.filter((r) => r.path.split("/").includes("+")).map((r) => r.path);
  return { roots, patterns };
}

async function showRoots(ctx, tree, status, roots, patterns) {
  const who = ctx.session.who;
  status.textContent = roots.length
    ? `What ${who.kind === "admin" ? "the admin token" : `group ${who.group}`} may list:`
    : `Group ${who.group} may list no prefix.`;
  const list = el("ul", { cls: "tree" });
  tree.append(list);
  const nodes = roots.map((prefix) => folderNode(ctx, prefix, prefix, null));
  list.append(...nodes.map((n) => n.li));
  if (patterns.length) {
    tree.append(el("p", { cls: "hint" }, "Also listable, through wildcards (open a concrete "
      + "prefix above): ", patterns.map((p) => [el("code", { text: p }), " "])));
  }
  if (nodes.length <= 4) await Promise.all(nodes.map((n) => n.expand()));
}

// ---- one folder ----------------------------------------------------------------------------

function folderNode(ctx, prefix, label, count) {
  const body = el("ul", { cls: "children", hidden: true });
  const caret = el("span", { cls: "caret", text: "▸" });
  const toggle = el("button", { type: "button", cls: "toggle", "aria-expanded": "false" },
    caret, el("span", { cls: "name", text: label }),
    count === null ? null : el("span", { cls: "count", text: plural(count, "key") }));
  const matrix = el("button", { type: "button", cls: "link", text: "who can decrypt",
    on: { click: () => ctx.session.open("access", { path: prefix }) } });
  const li = el("li", { cls: "folder", data: { prefix } }, toggle, " ", matrix, body);
  let loaded = false;

  async function expand() {
    toggle.setAttribute("aria-expanded", "true");
    caret.textContent = "▾";
    body.hidden = false;
    if (loaded) return;
    loaded = true;
    body.append(el("li", { cls: "loading", text: "loading…" }));
    try {
      const names = await listNames(ctx, prefix);
      clear(body);
      const kids = children(prefix, names);
      if (!kids.length) body.append(el("li", { cls: "empty", text: "(nothing you may read)" }));
      await showPage(ctx, body, prefix, names, kids, 0);
      if (count === null) {
        toggle.append(el("span", { cls: "count", text: plural(names.length, "key") }));
      }
    } catch (err) {
      clear(body).append(el("li", {}, errorBox(err)));
      loaded = false;
    }
  }
  toggle.addEventListener("click", () => {
    if (body.hidden) expand();
    else {
      body.hidden = true;
      caret.textContent = "▸";
      toggle.setAttribute("aria-expanded", "false");
    }
  });
  return { li, expand };
}

async function listNames(ctx, prefix) {
  if (ctx.session.who.kind !== "admin") {
    const body = await api(`/v1/kv${encodePath(prefix)}`, { list: "true" });
    return body.keys;
  }
  const names = [];
  let after = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const body = await api(`/v1/coverage${encodePath(prefix)}`, { limit: ADMIN_PAGE, after });
    for (const row of body.keys) {
      ctx.rows.set(row.path, row);
      names.push(row.path);
    }
    after = body.next;
    if (!after) break;
  }
  return names;
}

// The next level under prefix: folders (with how many keys lie below) first, then keys.
function children(prefix, names) {
  const folders = new Map();
  const keys = [];
  names.forEach((path, index) => {
    const rest = path.slice(prefix.length);
    const cut = rest.indexOf("/");
    if (cut < 0) {
      keys.push({ kind: "key", path, name: rest, index });
      return;
    }
    const name = rest.slice(0, cut);
    const found = folders.get(name);
    if (found) found.count += 1;
    else folders.set(name, { kind: "folder", name, prefix: `${prefix}${name}/`, count: 1 });
  });
  return [...folders.values(), ...keys];
}

async function showPage(ctx, body, prefix, names, kids, from) {
  const slice = kids.slice(from, from + PAGE);
  await coverKeys(ctx, prefix, names, slice.filter((k) => k.kind === "key"));
  for (const kid of slice) {
    body.append(kid.kind === "folder"
      ? folderNode(ctx, kid.prefix, `${kid.name}/`, kid.count).li : keyNode(ctx, kid));
  }
  const left = kids.length - from - slice.length;
  if (left > 0) {
    const more = el("button", { type: "button", cls: "more",
      text: `show ${Math.min(left, PAGE)} more (${left} not shown)` });
    const item = el("li", { cls: "more" }, more);
    more.addEventListener("click", async () => {
      more.disabled = true;
      item.remove();
      await showPage(ctx, body, prefix, names, kids, from + PAGE);
    });
    body.append(item);
  }
}

// Coverage rows for the keys on screen: one request per run of keys that are adjacent
// in the listing (a sub-folder's keys between two of them would break the run).
async function coverKeys(ctx, prefix, names, keys) {
  const runs = [];
  for (const key of keys.filter((k) => !ctx.rows.has(k.path))) {
    const last = runs[runs.length - 1];
    if (last && key.index === last.end + 1) last.end = key.index;
    else runs.push({ start: key.index, end: key.index });
  }
  const jobs = runs.map((run) => async () => {
    const body = await api(`/v1/coverage${encodePath(prefix)}`, {
      limit: run.end - run.start + 1, after: run.start > 0 ? names[run.start - 1] : null });
    for (const row of body.keys) ctx.rows.set(row.path, row);
  });
  await pool(jobs, 4);
}

// ---- one key ---------------------------------------------------------------------------------

function summary(row) {
  if (!row) return "no coverage answer (changed meanwhile?)";
  const parts = [`rev ${row.revision}`, fmtBytes(row.size),
    `readers: ${row.readers.length ? row.readers.join(", ") : "none"}`];
  if (row.lease) parts.push(`lease ${row.lease}${row.ttl === null ? "" : ` (${fmtLeft(row.ttl)} left)`}`);
  if (row.problems.length) parts.push(plural(row.problems.length, "problem"));
  return parts.join(" · ");
}

function keyNode(ctx, key) {
  const row = ctx.rows.get(key.path);
  const verdict = row ? row.verdict : "unknown";
  const details = el("div", { cls: "details", hidden: true });
  const head = el("button", { type: "button", cls: "keyhead", "aria-expanded": "false" },
    el("span", { cls: "name", text: key.name }), " ", verdictBadge(verdict), " ",
    el("span", { cls: "meta", text: summary(row) }));
  head.addEventListener("click", () => {
    if (!details.childElementCount && row) details.append(keyDetails(ctx, row));
    details.hidden = !details.hidden;
    head.setAttribute("aria-expanded", String(!details.hidden));
  });
  return el("li", { cls: `key${verdict === "ok" ? "" : " problem"}`,
    data: { path: key.path, verdict } }, head, details);
}

export function keyDetails(ctx, row) {
  const facts = [["path", row.path], ["revision", row.revision],
    ["created at revision", row.create_revision], ["size", fmtBytes(row.size)],
    ["counter", row.counter === null ? "—" : row.counter],
    ["lease", row.lease ? `${row.lease}${row.ttl === null ? "" : `, ${fmtLeft(row.ttl)} left`}` : "none"],
    ["signer", row.signer ? `${row.signer.name || "(not listed)"} ${row.signer.key_id}` : "unsigned"],
    ["readers (policy)", row.readers.join(", ") || "none"]];
  const stanzas = el("table", { cls: "grid" },
    el("thead", {}, el("tr", {}, ["stanza key", "group", "role", "keyring position"]
      .map((h) => el("th", { text: h })))),
    el("tbody", {}, row.stanzas.map((s) => el("tr", { cls: `role-${s.role}` },
      el("td", {}, el("code", { text: s.key_id })), el("td", { text: s.group || "—" }),
      el("td", { text: s.role }), el("td", { text: s.position === null ? "—" : s.position })))));
  return el("div", {},
    el("dl", { cls: "facts" }, facts.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
    row.stanzas.length ? stanzas : el("p", { text: "No stanzas (not a vaultkey envelope)." }),
    problemList(row.problems),
    el("button", { type: "button", cls: "link", text: "who can decrypt this key →",
      on: { click: () => ctx.session.open("access", { path: row.path }) } }));
}

export function problemList(problems) {
  if (!problems.length) return el("p", { cls: "ok-text", text: "No problem: exactly the readers' current keys." });
  return el("ul", { cls: "problems" }, problems.map((p) => el("li", {},
    verdictBadge(p.verdict), " ", el("span", { text: p.detail }),
    p.fix ? el("div", { cls: "fix" }, "fix: ", el("code", { text: p.fix })) : null)));
}

// ---- only problems -----------------------------------------------------------------------------

async function scanProblems(ctx, tree, status, roots) {
  const table = el("tbody");
  tree.append(el("table", { cls: "grid", id: "ks-problem-table" },
    el("thead", {}, el("tr", {}, ["key", "verdict", "problem", "fix"].map((h) => el("th", { text: h })))),
    table));
  let checked = 0;
  let found = 0;
  for (const prefix of roots) {
    let after = null;
    for (let page = 0; page < MAX_PAGES && ctx.alive; page++) {
      const body = await api(`/v1/coverage${encodePath(prefix)}`, { limit: SCAN_PAGE, after });
      checked += body.keys.length;
      for (const row of body.keys.filter((r) => r.verdict !== "ok")) {
        found += 1;
        table.append(problemRow(ctx, row));
      }
      status.textContent = `${plural(found, "problem")} in ${plural(checked, "key")} checked under ${roots.join(", ")}`;
      after = body.next;
      if (!after) break;
    }
  }
  if (!found) tree.append(el("p", { cls: "ok-text", id: "ks-no-problems", text: "No problem found." }));
}

function problemRow(ctx, row) {
  const first = row.problems[0] || { detail: "", fix: null };
  return el("tr", { cls: "problem", data: { path: row.path, verdict: row.verdict } },
    el("td", {}, el("button", { type: "button", cls: "link", text: row.path,
      on: { click: () => ctx.session.open("access", { path: row.path }) } })),
    el("td", {}, verdictBadge(row.verdict)),
    el("td", { text: row.problems.map((p) => p.detail).join("; ") }),
    el("td", {}, first.fix ? el("code", { text: first.fix }) : "—"));
}

// Admin only: tokens (GET /v1/tokens) and the audit log's tail (GET /v1/audit). With a
// group token the server answers 403, and the view shows that refusal.

import { api, clear, el, errorBox, field, fmtTime, plural, ready } from "./core.js";

function table(id, head, rows) {
  return el("table", { cls: "grid", id },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows));
}

export function mountTokens(root) {
  const out = el("div", { id: "tok-out" });
  root.append(el("p", { cls: "help", text: "Group tokens by id (never their secrets). A "
    + "revoked token stops working at once and is listed as revoked, with the time, for 30 "
    + "days; an expired one stays listed (it no longer authenticates) until revoked." }), out);
  (async () => {
    try {
      const body = await api("/v1/tokens");
      const now = Date.now() / 1000;
      const row = (t, status, cls) => el("tr", { cls, data: { id: t.id } },
        el("td", {}, el("code", { text: t.id })), el("td", { text: t.group || "—" }),
        el("td", { text: t.name || "—" }), el("td", { text: fmtTime(t.created) }),
        el("td", { text: fmtTime(t.expires) }), el("td", { text: t.revoked ? fmtTime(t.revoked) : "—" }),
        el("td", { text: status }));
      const rows = body.tokens.map((t) => {
        const expired = t.expires !== null && t.expires <= now;
        return row(t, expired ? "expired" : "active", expired ? "expired" : null);
      }).concat((body.revoked || []).map((t) => row(t, "revoked", "revoked")));
      out.append(el("p", { cls: "status", text: plural(body.tokens.length, "token") + ", "
        + plural((body.revoked || []).length, "revoked token") }),
        table("tok-table", ["id", "group", "name", "created", "expires", "revoked", "status"],
          rows));
    } catch (err) {
      out.append(errorBox(err));
    }
    ready(root);
  })();
}

export function mountAudit(root) {
  const group = el("input", { type: "text", id: "au-group", placeholder: "any", spellcheck: "false" });
  const path = el("input", { type: "text", id: "au-path", placeholder: "any (a prefix)", spellcheck: "false" });
  const decision = el("select", { id: "au-decision" },
    ["", "allow", "deny"].map((d) => el("option", { value: d, text: d || "any" })));
  const limit = el("input", { type: "number", id: "au-limit", min: 1, max: 1000, value: 200 });
  const out = el("div", { id: "au-out" });
  const form = el("form", { cls: "toolbar", id: "au-form", autocomplete: "off" },
    field("Group", group), field("Path prefix", path), field("Decision", decision),
    field("Lines", limit), el("button", { type: "submit", text: "Show" }));
  const load = async () => {
    delete root.dataset.ready;
    clear(out);
    try {
      const body = await api("/v1/audit", { limit: limit.value, group: group.value.trim(),
        path: path.value.trim(), decision: decision.value });
      const rows = body.lines.map((line) => el("tr", { cls: line.decision === "deny" ? "deny" : null,
        data: { decision: line.decision || "none", group: line.group || "" } },
      el("td", { text: line.time }), el("td", { text: line.group || "—" }),
      el("td", {}, el("code", { text: line.token_id || line.claimed_token_id || "—" })),
      el("td", { text: line.op }), el("td", {}, el("code", { text: line.path || "—" })),
      el("td", { text: line.decision || "—" }), el("td", { text: line.status })));
      out.append(el("p", { cls: "status", text: `${plural(rows.length, "line")}, newest last`
        + (body.complete ? " (the whole log searched)" : "") }),
      table("au-table", ["time (UTC)", "group", "token id", "op", "path", "decision", "status"], rows));
    } catch (err) {
      out.append(errorBox(err));
    }
    ready(root);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  root.append(form, out);
  load();
}

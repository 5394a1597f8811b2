// The vaultkey operator console: sign-in, navigation, and the view switch.
// Read-only: it never shows or handles a value or a secret key (no decrypt button).

import { ApiError, api, clear, el, errorBox, forgetToken, getToken, setToken } from "./core.js";
import * as keyspace from "./keyspace.js";
import * as views from "./views.js";
import * as admin from "./admin.js";

const VIEWS = {
  keyspace: { title: "Keyspace", mount: keyspace.mount },
  access: { title: "Who can decrypt", mount: views.mountAccess },
  explain: { title: "Policy explain", mount: views.mountExplain },
  registrations: { title: "Registrations", mount: views.mountRegistrations },
  tokens: { title: "Tokens", mount: admin.mountTokens, admin: true },
  audit: { title: "Audit log", mount: admin.mountAudit, admin: true },
};

// What the signed-in token is (from /v1/whoami), and what views hand each other.
const session = { who: null, pending: {}, open: openView };
let current = null; // { name, stop }

function $(id) {
  return document.getElementById(id);
}

function viewName() {
  const name = location.hash.replace(/^#/, "");
  return Object.hasOwn(VIEWS, name) ? name : "keyspace";
}

function openView(name, pending) {
  session.pending = pending || {};
  if (location.hash === `#${name}`) render();
  else location.hash = `#${name}`; // hashchange renders
}

function render() {
  if (!session.who) return;
  if (current && current.stop) current.stop();
  const name = viewName();
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === name);
  }
  const root = clear($("view"));
  root.dataset.view = name;
  delete root.dataset.ready;
  const view = VIEWS[name];
  root.append(el("h2", { text: view.title }));
  const stop = view.mount(root, session);
  current = { name, stop };
  session.pending = {};
}

function showSignedIn(who) {
  session.who = who;
  $("signin").hidden = true;
  $("nav").hidden = false;
  $("signout").hidden = false;
  const label = who.kind === "admin"
    ? `admin token (${who.token_id})`
    : `group ${who.group} · token ${who.token_id}${who.name ? ` (${who.name})` : ""}`;
  $("who").textContent = `Signed in: ${label}`;
  document.body.dataset.kind = who.kind;
  render();
}

function showSignedOut(err) {
  if (current && current.stop) current.stop();
  current = null;
  session.who = null;
  $("signin").hidden = false;
  $("nav").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "Not signed in";
  delete document.body.dataset.kind;
  clear($("view"));
  const box = clear($("signin-error"));
  if (err) box.append(errorBox(err));
}

async function signIn(token) {
  setToken(token);
  try {
    showSignedIn(await api("/v1/whoami"));
  } catch (err) {
    forgetToken();
    showSignedOut(err);
  }
}

function setup() {
  const nav = $("nav");
  for (const [name, view] of Object.entries(VIEWS)) {
    nav.append(el("a", { href: `#${name}`, cls: view.admin ? "admin" : null,
      data: { view: name }, text: view.title + (view.admin ? " (admin)" : "") }));
  }
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("token-input");
    const token = input.value.trim();
    input.value = ""; // the token stays in sessionStorage only, not in the page
    if (token) signIn(token);
    else showSignedOut(new ApiError(0, "no_token", "paste a token first", null));
  });
  $("signout").addEventListener("click", () => {
    forgetToken();
    showSignedOut(null);
  });
  window.addEventListener("hashchange", render);
  if (getToken()) signIn(getToken());
  else showSignedOut(null);
}

setup();

"""The operator console (issue 14) in a real browser: Debian's headless Chromium driven by
Playwright, against a real TLS proxy and real etcd.

The browser trusts the proxy by its key, not by switching certificate checks off: it is
launched with ``--ignore-certificate-errors-spki-list`` naming the SHA-256 of the test
server certificate's public key, so any other certificate is still refused.

Screenshots of each view go to this test's tmp dir, or to ``$VAULTKEY_SCREENSHOTS``
(``scripts/screenshots`` sets it to ``docs/img``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests._helpers.wait import wait_until
from tests.e2e.test_cli import vk
from vaultkey.crypto import encrypt

CHROMIUM = "/usr/bin/chromium"
HOSTILE = "<img src=x onerror=alert(1)>"
QUOTED = "it's \"q\" & <svg onload=alert(2)>"  # quotes, an ampersand, another tag
POLICIES = {
    "alpha.toml": """group = "alpha"
description = "the alpha service"
recipients = ["alpha.pub"]
[[rules]]
prefix = "/alpha/"
allow = ["read", "list", "write", "delete", "watch"]
[[rules]]
prefix = "/alpha/locked/"
deny = ["write", "delete"]
[[rules]]
prefix = "/shared/"
allow = ["list"]
[[rules]]
prefix = "/shared/alpha/"
allow = ["read", "write"]
""",
    "beta.toml": """group = "beta"
recipients = ["beta.pub"]
[[rules]]
prefix = "/beta/"
allow = ["read", "list", "write", "delete", "watch"]
[[rules]]
prefix = "/shared/"
allow = ["read", "list", "write"]
[[rules]]
prefix = "/alpha/shared/"
allow = ["read", "list"]
""",
}
ALPHA_KEYS = ["/alpha/app/db", "/alpha/app/api-key", "/alpha/app/conf/url", "/alpha/notes",
              f"/alpha/{HOSTILE}", f"/alpha/{QUOTED}", "/shared/alpha/cfg"]
BETA_KEYS = ["/beta/only-beta", "/shared/beta-x"]
PLANTED = "/alpha/shared/db"  # encrypted for alpha only, but beta may read it


@pytest.fixture(scope="module")
def console(proxy_factory):
    proxy = proxy_factory(POLICIES)
    proxy.tokens = {g: proxy.create_token(g, name=f"{g}-console") for g in ("alpha", "beta")}
    for group, paths in (("alpha", ALPHA_KEYS), ("beta", BETA_KEYS)):
        with proxy.client(proxy.tokens[group]) as c:
            for path in paths:
                r = c.put(f"/v1/kv{path}", content=proxy.envelope(path, b"v"))
                assert r.status_code == 200, (path, r.text)
    store = proxy.store()
    try:  # as a writer bypassing the proxy could: beta's reader key is missing
        store.put(PLANTED, encrypt(b"v", PLANTED, [proxy.keys["alpha"].public]))
    finally:
        store.conn.close()
    with proxy.client(proxy.admin_token) as c:
        assert wait_until(lambda: c.get(f"/v1/coverage{PLANTED}").status_code == 200)
    return proxy


def _spki(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def browser(tls_ca) -> Iterator[Browser]:
    _ca, _ca_path, cert, _key = tls_ca
    assert Path(CHROMIUM).exists(), "install Debian's chromium (scripts/_bootstrap.sh does)"
    with sync_playwright() as pw:
        found = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
            f"--ignore-certificate-errors-spki-list={_spki(cert)}"])
        yield found
        found.close()


@pytest.fixture
def page(browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    found = context.new_page()
    dialogs: list[str] = []
    problems: list[str] = []
    found.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    found.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    found.on("console", lambda m: problems.append(m.text)
             if "Content Security Policy" in m.text else None)
    yield found
    context.close()
    assert not dialogs, f"a script ran: {dialogs}"
    assert not problems, problems


def _shot(page: Page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("VAULTKEY_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"console-{name}.png"))


def _sign_in(page: Page, proxy, token: str) -> None:
    page.goto(f"{proxy.addr}/ui/")
    page.fill("#token-input", token)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#who")).to_contain_text("Signed in")
    _ready(page)


def _ready(page: Page) -> None:
    page.wait_for_selector("#view[data-ready]")


def _open(page: Page, view: str) -> None:
    page.click(f"#nav a[data-view={view}]")
    expect(page.locator("#view")).to_have_attribute("data-view", view)
    _ready(page)


def _folder(page: Page, prefix: str):
    return page.locator(f'li.folder[data-prefix="{prefix}"]')


def _key(page: Page, path: str):
    quoted = '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'  # a CSS string
    return page.locator(f"li.key[data-path={quoted}]")


def _expand(page: Page, prefix: str) -> None:
    folder = _folder(page, prefix)
    folder.locator(":scope > button.toggle").click()
    expect(folder.locator(":scope > ul.children > li").first).to_be_visible()
    expect(folder.locator(":scope > ul.children > li.loading")).to_have_count(0)


def test_the_sign_in_page_says_it_handles_no_plaintext(console, page, tmp_path):
    page.goto(f"{console.addr}/ui")  # redirected to /ui/
    assert page.url == f"{console.addr}/ui/"
    notice = page.locator("#no-plaintext")
    expect(notice).to_contain_text("never shows or handles secret values")
    expect(notice).to_contain_text("no decrypt")
    assert page.get_by_role("button", name=re.compile("decrypt", re.I)).count() == 0
    _shot(page, "signin", tmp_path)


def test_a_group_token_sees_only_its_own_keys(console, page, tmp_path):
    token = console.tokens["alpha"]
    _sign_in(page, console, token)
    expect(page.locator("#who")).to_contain_text("group alpha")
    expect(_folder(page, "/alpha/")).to_be_visible()
    expect(_folder(page, "/shared/")).to_be_visible()
    expect(_key(page, "/alpha/notes")).to_be_visible()
    expect(_folder(page, "/alpha/app/")).to_contain_text("3 keys")
    _expand(page, "/alpha/app/")
    expect(_key(page, "/alpha/app/db").locator(".verdict")).to_have_text("ok")
    _expand(page, "/shared/alpha/")
    expect(_key(page, "/shared/alpha/cfg")).to_be_visible()
    text = page.locator("#view").inner_text()
    for other in ("only-beta", "beta-x", "/beta/"):
        assert other not in text
    assert page.locator("li.key").count() == 6  # notes, the two odd names, db, api-key, cfg
    # the token: in sessionStorage only; not in the URL, the page, or a cookie
    assert page.evaluate("sessionStorage.getItem('vaultkey.console.token')") == token
    assert token not in page.url and token not in page.content()
    assert page.context.cookies() == []
    _shot(page, "keyspace", tmp_path)


def test_a_hostile_key_name_is_shown_as_text_and_runs_nothing(console, page, tmp_path):
    _sign_in(page, console, console.tokens["alpha"])
    hostile = _key(page, f"/alpha/{HOSTILE}")
    expect(hostile.locator(".name")).to_have_text(HOSTILE)
    quoted = _key(page, f"/alpha/{QUOTED}")
    expect(quoted.locator(".name")).to_have_text(QUOTED)
    hostile.locator("button.keyhead").click()
    expect(hostile.locator(".details")).to_contain_text(f"/alpha/{HOSTILE}")
    assert page.locator("#view img, #view svg").count() == 0
    page.click("text=who can decrypt this key →")
    expect(page.locator("#acc-table")).to_be_visible()
    expect(page.locator("#acc-out .status")).to_contain_text(f"/alpha/{HOSTILE}")
    assert page.locator("img").count() == 0
    assert page.evaluate("typeof window.alert") == "function"  # untouched; no dialog fired


def test_a_planted_missing_reader_is_shown_and_cleared_by_rewrap(console, page, tmp_path):
    _sign_in(page, console, console.tokens["alpha"])
    _expand(page, "/alpha/shared/")
    planted = _key(page, PLANTED)
    expect(planted.locator(".verdict")).to_have_text("missing-reader")
    planted.locator("button.keyhead").click()
    expect(planted.locator(".details .fix code")).to_have_text("vaultkey rewrap /alpha/shared/")
    expect(planted.locator(".details")).to_contain_text("group beta has no stanza")
    _shot(page, "keyspace-details", tmp_path)
    page.check("#ks-problems")
    _ready(page)
    row = page.locator("#ks-problem-table tr.problem")
    expect(row).to_have_count(1)
    expect(row.locator(".verdict")).to_have_text("missing-reader")
    expect(row).to_contain_text("vaultkey rewrap /alpha/shared/")
    _shot(page, "problems", tmp_path)

    page.click("#signout")
    _sign_in(page, console, console.admin_token)  # every group's row of the matrix
    _open(page, "access")
    page.fill("#acc-path", PLANTED)
    page.click("#acc-form button[type=submit]")
    _ready(page)
    beta = page.locator('#acc-table tr[data-group="beta"]')
    expect(beta).to_have_class(re.compile("mismatch"))
    expect(beta.locator("td.decrypt")).to_have_text("no")
    line = _rule_line(POLICIES["beta.toml"], 'prefix = "/alpha/shared/"')
    expect(beta.locator("td[data-cap=read]")).to_contain_text(f"beta.toml:{line}")
    expect(beta.locator("code.fix")).to_have_text("vaultkey rewrap /alpha/shared/")
    expect(page.locator('#acc-table tr[data-group="alpha"]')).not_to_have_class(
        re.compile("mismatch"))
    _shot(page, "access", tmp_path)

    r = vk(console, "alpha", "rewrap", "/alpha/shared/")
    assert r.returncode == 0, r.stderr.decode()
    page.click("#acc-form button[type=submit]")
    _ready(page)
    expect(beta).not_to_have_class(re.compile("mismatch"))
    expect(beta.locator("td.decrypt")).to_have_text("yes")
    page.click("#signout")
    _sign_in(page, console, console.tokens["alpha"])
    page.check("#ks-problems")
    _ready(page)
    expect(page.locator("#ks-no-problems")).to_be_visible()
    expect(page.locator("#ks-problem-table tr.problem")).to_have_count(0)


def _rule_line(text: str, rule: str) -> int:
    """The line of the ``[[rules]]`` header above *rule* (what the engine reports)."""
    return text.splitlines().index(rule)  # 0-based index of *rule* = 1-based line above it


def test_policy_explain_shows_the_decision_and_the_deciding_rule(console, page, tmp_path):
    _sign_in(page, console, console.tokens["alpha"])
    _open(page, "explain")
    expect(page.locator("#ex-group")).to_be_disabled()  # a group token: its own group only
    expect(page.locator("#ex-group")).to_have_value("alpha")
    page.fill("#ex-path", "/alpha/locked/x")
    page.select_option("#ex-cap", "write")
    page.click("#ex-form button[type=submit]")
    _ready(page)
    line = _rule_line(POLICIES["alpha.toml"], 'prefix = "/alpha/locked/"')
    expect(page.locator("#ex-decision")).to_have_attribute("data-decision", "deny")
    expect(page.locator("#ex-rule code.where")).to_have_text(f"alpha.toml:{line}")
    expect(page.locator("#ex-rules tr.deciding")).to_contain_text(f"alpha.toml:{line}")
    _shot(page, "explain", tmp_path)
    page.fill("#ex-path", "/alpha/locked/x")
    page.select_option("#ex-cap", "read")
    page.click("#ex-form button[type=submit]")
    _ready(page)
    expect(page.locator("#ex-decision")).to_have_attribute("data-decision", "allow")


def test_registrations_are_listed_with_time_left_and_follow_the_watch(console, page, tmp_path):
    def put(path: str, ttl: str):
        with console.client(console.tokens["alpha"]) as c:
            r = c.put(f"/v1/kv{path}", params={"ttl": ttl},
                      content=console.envelope(path, b"addr"))
            assert r.status_code == 200, r.text

    put("/alpha/reg/web-1", "60")
    _sign_in(page, console, console.tokens["alpha"])
    _open(page, "registrations")
    page.fill("#reg-prefix", "/alpha/reg/")
    page.click("#reg-form button[type=submit]")
    expect(page.locator("#reg-status")).to_contain_text("live:")
    first = page.locator('#reg-rows tr[data-path="/alpha/reg/web-1"]')
    expect(first.locator("td.ttl")).to_have_text(re.compile(r"^\d+ s$|^1 min \d+ s$"))
    assert int(first.locator("td.ttl").inner_text().split(" ")[0]) <= 60
    put("/alpha/reg/web-2", "30")  # arrives through the watch stream, no reload
    second = page.locator('#reg-rows tr[data-path="/alpha/reg/web-2"]')
    expect(second.locator("td.ttl")).to_have_text(re.compile(r"^(30|2\d) s$"))
    _shot(page, "registrations", tmp_path)
    with console.client(console.tokens["alpha"]) as c:
        assert c.delete("/v1/kv/alpha/reg/web-1").status_code == 200
    expect(first).to_have_count(0)
    expect(second).to_have_count(1)


def test_the_admin_views_are_refused_to_a_group_token(console, page, tmp_path):
    _sign_in(page, console, console.tokens["beta"])
    for view in ("tokens", "audit"):
        _open(page, view)
        error = page.locator("#view .error")
        expect(error).to_contain_text("403 permission_denied")
        expect(error).to_contain_text("needs the admin token")
    assert page.locator("#tok-table, #au-table").count() == 0


def test_the_admin_token_sees_tokens_and_the_audit_tail(console, page, tmp_path):
    with console.client(console.tokens["alpha"]) as c:
        alpha_id = c.get("/v1/whoami").json()["token_id"]
        assert c.get("/v1/kv/beta/only-beta").status_code == 403  # an audited denial
    gone = console.create_token("beta", name="left-the-team")
    with console.client(gone) as c:
        gone_id = c.get("/v1/whoami").json()["token_id"]
    with console.client(console.admin_token) as c:
        assert c.delete(f"/v1/tokens/{gone_id}").status_code == 200
    _sign_in(page, console, console.admin_token)
    expect(page.locator("#who")).to_contain_text("admin token")
    for prefix in ("/alpha/", "/beta/", "/shared/"):  # the admin token's tree: everything
        expect(_folder(page, prefix)).to_be_visible()
    _open(page, "tokens")
    row = page.locator(f'#tok-table tr[data-id="{alpha_id}"]')
    expect(row).to_contain_text("alpha-console")
    expect(row).to_contain_text("active")
    revoked = page.locator(f'#tok-table tr[data-id="{gone_id}"]')
    expect(revoked).to_contain_text("left-the-team")
    expect(revoked).to_contain_text("revoked")
    _shot(page, "tokens", tmp_path)
    _open(page, "audit")
    expect(page.locator("#au-table tbody tr").first).to_be_visible()
    _shot(page, "audit", tmp_path)
    page.fill("#au-group", "alpha")
    page.select_option("#au-decision", "deny")
    page.click("#au-form button[type=submit]")
    _ready(page)
    rows = page.locator("#au-table tbody tr")
    expect(rows.filter(has_text="/beta/only-beta").first).to_be_visible()
    assert rows.count() == page.locator(
        '#au-table tbody tr[data-decision="deny"][data-group="alpha"]').count()

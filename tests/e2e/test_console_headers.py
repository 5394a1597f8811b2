"""The operator console's page security, over real TLS against real etcd: its headers on
``/ui/`` and every asset, the asset allow-list, no third-party URL and no token in what is
served; and the console's endpoints ``/v1/audit``, ``/v1/explain`` and ``/v1/rules``:
who may call them, what they answer, and that they are audited."""

from __future__ import annotations

import fnmatch
import http.client
import json
import re
import ssl
import tomllib
from pathlib import Path

import pytest

from tests._helpers.wait import wait_until
from vaultkey.proxy import console as console_package
from vaultkey.proxy.console import ASSETS
from vaultkey.proxy.console.audittail import AuditFilter, read_tail

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"content-security-policy": CSP, "x-frame-options": "DENY",
           "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
           "cache-control": "no-store"}


def _served(proxy) -> dict[str, bytes]:
    with proxy.client() as c:
        return {name: c.get(f"/ui/{name}").content for name in ASSETS}


def test_every_console_answer_carries_the_security_headers(proxy):
    with proxy.client() as c:
        for name in ASSETS:
            r = c.get(f"/ui/{name}")
            assert r.status_code == 200, (name, r.text)
            for header, value in HEADERS.items():
                assert r.headers.get(header) == value, (name, header)
        missing = c.get("/ui/nothing.js")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert all(missing.headers.get(h) == v for h, v in HEADERS.items())


def test_every_asset_is_served_and_shipped_in_the_wheel():
    folder = Path(console_package.__file__).parent
    files = {p.name for p in folder.iterdir() if p.suffix in (".html", ".js", ".css", ".png")}
    assert set(ASSETS.values()) == files  # nothing unserved, nothing missing
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"][
        "vaultkey"]
    for name in files:
        assert any(fnmatch.fnmatch(f"proxy/console/{name}", p) for p in patterns), name


def test_assets_have_exact_content_types(proxy):
    types = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
             ".css": "text/css; charset=utf-8", ".png": "image/png"}
    with proxy.client() as c:
        assert c.get("/ui/").headers["content-type"] == types[".html"]
        for name in ASSETS:
            if name:
                assert c.get(f"/ui/{name}").headers["content-type"] == types[
                    name[name.rindex("."):]], name


def test_ui_redirects_to_ui_slash_with_a_relative_location(proxy):
    with proxy.client() as c:
        r = c.get("/ui", headers={"Host": "evil.example"})
    assert r.status_code == 307
    assert r.headers["location"] == "/ui/"
    assert r.headers["x-frame-options"] == "DENY"


def _raw_get(proxy, path: str) -> tuple[int, bytes]:
    """GET *path* exactly as written (httpx would remove '.' and '..' segments first)."""
    host, port = proxy.addr.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(proxy.ca_path))
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", [
    "/ui/../vaultkey/proxy/config.py", "/ui/%2e%2e/%2e%2e/etc/passwd", "/ui/../../etc/passwd",
    "/ui/console/__init__.py", "/ui/app.js/", "/ui/./app.js", "/ui/APP.JS", "/ui/audittail.py",
    "/ui/__init__.py", "/ui//etc/passwd", "/ui/app.js%00", "/ui/app.js;.html",
    "/ui/%2Fetc%2Fpasswd", "/ui/..%2F__init__.py", "/ui/index.html/..",
])
def test_only_the_allow_listed_assets_are_served(proxy, path):
    status, body = _raw_get(proxy, path)
    assert status == 404, (path, status)
    assert b"import " not in body and b"root:" not in body


def test_no_third_party_url_in_any_served_asset(proxy):
    for name, body in _served(proxy).items():
        text = body.decode("utf-8", errors="replace")
        assert not re.findall(r"https?://", text), name
        assert "//cdn" not in text and "@import" not in text, name
        assert not re.search(r"""(src|href)\s*=\s*["']//""", text), name


def test_no_inline_script_style_or_eval_in_the_page(proxy):
    served = _served(proxy)
    html = served["index.html"].decode()
    assert re.findall(r"<script[^>]*>", html) == ['<script type="module" src="app.js">']
    assert "</script>" in html and not re.search(r"<script[^>]*>\s*\S", html.replace(
        '<script type="module" src="app.js"></script>', ""))
    assert " style=" not in html and "<style" not in html
    assert not re.search(r"\son[a-z]+\s*=", html)
    for name, body in served.items():
        if name.endswith(".js"):
            text = body.decode()
            assert "innerHTML" not in text and "outerHTML" not in text, name
            assert "insertAdjacentHTML" not in text and "document.write" not in text, name
            assert not re.search(r"\beval\(|new Function\(|setTimeout\(\s*['\"]", text), name


def test_no_token_or_secret_in_the_page_source(proxy):
    for name, body in _served(proxy).items():
        text = body.decode("utf-8", errors="replace")
        assert proxy.admin_token not in text, name
        assert all(token not in text for token in proxy.tokens.values()), name
        assert not re.search(r"vkt_[0-9a-f]{16}\.", text), name
        assert "vksec" not in text.lower(), name


def test_audit_and_tokens_are_refused_to_group_tokens_and_need_a_token(proxy):
    with proxy.client(proxy.tokens["alpha"]) as c:
        for route in ("/v1/audit", "/v1/tokens"):
            r = c.get(route)
            assert r.status_code == 403, route
            assert r.json()["error"]["code"] == "permission_denied"
    with proxy.client() as c:
        for route in ("/v1/audit", "/v1/tokens", "/v1/explain", "/v1/rules"):
            r = c.get(route)
            assert r.status_code == 401, route
            assert r.headers["www-authenticate"] == 'Bearer realm="vaultkey"'


def test_the_audit_tail_is_filtered_and_newest_last(proxy):
    with proxy.client(proxy.tokens["alpha"]) as c:
        assert c.get("/v1/kv/alpha/x").status_code == 404
        assert c.get("/v1/kv/beta/x").status_code == 403
    with proxy.client(proxy.tokens["beta"]) as c:
        assert c.get("/v1/kv/beta/y").status_code == 404
    with proxy.client(proxy.admin_token) as c:
        def lines(**params):
            r = c.get("/v1/audit", params=params)
            assert r.status_code == 200, r.text
            return r.json()["lines"]

        assert wait_until(lambda: any(x["path"] == "/beta/y" for x in lines(group="beta")))
        denied = lines(group="alpha", decision="deny")
        assert denied and all(x["group"] == "alpha" and x["decision"] == "deny" for x in denied)
        assert any(x["path"] == "/beta/x" for x in denied)
        under = lines(path="/alpha/")
        assert under and all(x["path"].startswith("/alpha/") for x in under)
        everything = lines(limit="1000")
        times = [x["time"] for x in everything]
        assert times == sorted(times)  # newest last
        last_two = lines(limit="2")  # (lines keep coming: these calls are audited too)
        assert len(last_two) == 2 and last_two[0]["time"] >= times[-2]
        for bad in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"decision": "maybe"}):
            assert c.get("/v1/audit", params=bad).status_code == 422, bad


def test_refused_console_calls_are_audited_with_their_op(proxy):
    with proxy.client(proxy.tokens["beta"]) as c:
        assert c.get("/v1/audit").status_code == 403
        assert c.get("/v1/explain", params={"group": "alpha", "path": "/a",
                                            "cap": "read"}).status_code == 403

    def found() -> list[dict]:
        text = proxy.audit_path.read_text()
        return [line for line in map(json.loads, text.splitlines())
                if line["group"] == "beta" and line["op"] in ("audit.tail", "explain")]

    assert wait_until(lambda: len(found()) >= 2)
    assert {(x["op"], x["decision"], x["status"]) for x in found()} >= {
        ("audit.tail", "deny", 403), ("explain", "deny", 403)}


def test_explain_answers_for_the_own_group_and_refuses_another(proxy):
    with proxy.client(proxy.tokens["alpha"]) as c:
        r = c.get("/v1/explain", params={"group": "alpha", "path": "/alpha/locked/x",
                                         "cap": "write"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["decision"] == "deny" and body["allowed"] is False
        assert body["rule"]["where"] == "alpha.toml:7"
        assert body["rule"]["kind"] == "prefix" and body["rule"]["path"] == "/alpha/locked/"
        assert body["explanation"].startswith("deny: alpha.toml:7 prefix /alpha/locked/")
        own = c.get("/v1/explain", params={"path": "/alpha/", "cap": "list"}).json()
        assert own["group"] == "alpha" and own["is_prefix"] is True and own["allowed"] is True
        nothing = c.get("/v1/explain", params={"path": "/nowhere/x", "cap": "read"}).json()
        assert nothing["rule"] is None and "default deny" in nothing["explanation"]
        for group in ("beta", "no-such-group"):
            r = c.get("/v1/explain", params={"group": group, "path": "/beta/x", "cap": "read"})
            assert r.status_code == 403, group
        for bad in ({"path": "/alpha/x", "cap": "fly"}, {"path": "alpha/x", "cap": "read"},
                    {"path": "/alpha/../x", "cap": "read"}, {"cap": "read"},
                    {"path": "/alpha/x"}):
            assert c.get("/v1/explain", params=bad).status_code == 422, bad


def test_the_admin_token_explains_any_group(proxy):
    with proxy.client(proxy.admin_token) as c:
        r = c.get("/v1/explain", params={"group": "beta", "path": "/shared/alpha/secret",
                                         "cap": "read"})
        assert r.status_code == 200, r.text
        assert r.json()["decision"] == "deny" and r.json()["rule"]["kind"] == "key"
        unknown = c.get("/v1/explain", params={"group": "nobody", "path": "/x", "cap": "read"})
        assert unknown.status_code == 422
        assert unknown.json()["error"]["message"] == "no policy defines group 'nobody'"
        assert c.get("/v1/explain", params={"path": "/x", "cap": "read"}).status_code == 422


def test_rules_show_the_own_group_or_every_group_for_the_admin(proxy):
    with proxy.client(proxy.tokens["beta"]) as c:
        body = c.get("/v1/rules").json()
        assert [g["group"] for g in body["groups"]] == ["beta"]
        first = body["groups"][0]["rules"][0]
        assert first == {"where": "beta.toml:4", "source": "beta.toml", "line": 4,
                         "kind": "prefix", "path": "/beta/",
                         "allow": ["read", "list", "write", "delete"], "deny": [],
                         "require_signature": False, "comment": ""}
        assert c.get("/v1/rules", params={"group": "alpha"}).status_code == 403
    with proxy.client(proxy.admin_token) as c:
        groups = [g["group"] for g in c.get("/v1/rules").json()["groups"]]
        assert groups == ["alpha", "beta", "gamma"]
        assert c.get("/v1/rules", params={"group": "nobody"}).status_code == 422


def test_audit_without_an_audit_log_is_a_clear_404(proxy_factory):
    bare = proxy_factory(extra_args=["--audit-log", ""])  # the last --audit-log wins: none
    with bare.client(bare.admin_token) as c:
        r = c.get("/v1/audit")
    assert r.status_code == 404
    assert r.json()["error"] == {"code": "not_found", "message": "this proxy writes no audit log",
                                 "hint": "start it with --audit-log FILE "
                                         "(see docs/OPERATIONS.md)"}


# ---- the tail reader behind /v1/audit, on files made here -------------------------------------

def _write_log(path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))


def test_the_tail_reader_finds_matches_across_blocks_newest_last(tmp_path):
    log = tmp_path / "audit.log"
    rows = [json.dumps({"group": "alpha" if i % 3 else "beta", "path": f"/p/{i}",
                        "decision": "deny" if i % 2 else "allow", "n": i})
            for i in range(20_000)]  # about 800 KiB: many 64 KiB blocks
    _write_log(log, rows)
    found = read_tail(str(log), 50, AuditFilter(group="beta", decision="deny"))
    assert [x["n"] for x in found.lines] == [i for i in range(20_000)
                                             if i % 3 == 0 and i % 2][-50:]
    assert not found.complete and found.scanned < log.stat().st_size
    everything = read_tail(str(log), 1000, AuditFilter(path="/p/1999"))
    assert [x["n"] for x in everything.lines] == [1999, *range(19990, 20000)]
    assert everything.complete  # it had to search the whole file


def test_the_tail_reader_skips_half_written_and_overlong_lines(tmp_path):
    log = tmp_path / "audit.log"
    long_line = json.dumps({"group": "x", "pad": "a" * 300_000})
    _write_log(log, [json.dumps({"n": 1}), long_line, "not json", "[1, 2]", json.dumps({"n": 2})])
    with open(log, "a") as fh:
        fh.write('{"n": 3, "half')  # a line still being written
    found = read_tail(str(log), 10, AuditFilter())
    assert [x.get("n") for x in found.lines] == [1, 2]
    assert found.complete


def test_the_tail_reader_stops_at_its_byte_budget(tmp_path):
    log = tmp_path / "audit.log"
    _write_log(log, [json.dumps({"group": "a", "n": i}) for i in range(50_000)])
    found = read_tail(str(log), 10, AuditFilter(group="nobody"), budget=256 * 1024)
    assert found.lines == [] and not found.complete
    assert found.scanned <= 256 * 1024 + 64 * 1024

"""The fast path for plain ``GET /v1/kv/<key>`` answers exactly as the FastAPI route.

``?consistent=false`` sends the same read through FastAPI (any query string does):
both must give the same status, body and headers, and the same audit line.
"""

from __future__ import annotations

import re

import pytest


def _answers(mproxy, token: str | None, path: str) -> tuple[object, object]:
    with mproxy.client(token) as c:
        fast = c.get(path)
        routed = c.get(path + "?consistent=false")
    return ((fast.status_code, fast.content, fast.headers.get("www-authenticate")),
            (routed.status_code, routed.content, routed.headers.get("www-authenticate")))


@pytest.mark.parametrize("path", [
    "/v1/kv/alpha/fast/present", "/v1/kv/alpha/fast/missing", "/v1/kv/beta/fast/secret",
    "/v1/kv/alpha/fast/", "/v1/kv/", "/v1/kv/alpha/../x", "/v1/kv/alpha/a%2Fb",
    "/v1/kv/alpha/%ff", "/v1/kv/alpha/x%01y", "/v1/kv/alpha/" + "a" * 2000,
])
@pytest.mark.parametrize("who", ["alpha", "beta", "admin", "nobody", "bogus"])
def test_the_fast_path_and_the_route_agree(mproxy, path, who):
    mproxy.store().put("/alpha/fast/present", mproxy.envelope("/alpha/fast/present", b"v"))
    others = {"admin": mproxy.admin_token, "nobody": None, "bogus": f"vkt_{'0' * 16}.{'A' * 43}"}
    token = others[who] if who in others else mproxy.tokens[who]
    fast, routed = _answers(mproxy, token, path)
    assert fast == routed


def test_a_fast_read_is_recorded_like_any_other(mproxy):
    """The audit middleware wraps both: the same record, so the same op in the metrics
    (tests/e2e/test_proxy_ops.py checks the audit file of a real proxy)."""
    mproxy.store().put("/alpha/fast/counted", mproxy.envelope("/alpha/fast/counted", b"v"))

    def count() -> float:
        text = mproxy.state.metrics.render().decode()
        found = re.search(r'^vaultkey_requests_total\{op="kv.read",status="200"\} (\S+)$', text,
                          re.M)
        return float(found.group(1)) if found else 0.0

    before = count()
    with mproxy.client(mproxy.tokens["alpha"]) as c:
        assert c.get("/v1/kv/alpha/fast/counted").status_code == 200
    assert count() == before + 1


def _normal(r) -> tuple[int, object]:
    """Status and body, with the revision (which differs between two writes) blanked."""
    try:
        body = r.json()
    except ValueError:
        return r.status_code, r.content
    if isinstance(body, dict) and "revision" in body:
        body["revision"] = "R"
    return r.status_code, body


@pytest.mark.parametrize("path", [
    "/v1/kv/alpha/fast/w", "/v1/kv/beta/fast/w", "/v1/kv/alpha/fast/", "/v1/kv/alpha/%ff",
    "/v1/kv/alpha/a%2Fb", "/v1/kv/alpha/../x",
])
@pytest.mark.parametrize("who", ["alpha", "beta", "admin", "nobody"])
def test_writes_and_deletes_on_the_fast_path_answer_as_the_route(mproxy, path, who):
    """PUT and DELETE with no query take the fast path; `?x=1` (ignored) takes the route."""
    others = {"admin": mproxy.admin_token, "nobody": None}
    token = others[who] if who in others else mproxy.tokens[who]
    key = path.removeprefix("/v1/kv")
    body = mproxy.envelope("/alpha/fast/w", b"v") if key == "/alpha/fast/w" else b"not an envelope"
    answers = []
    for query in ("", "?x=1"):
        with mproxy.client(token) as c:
            put = c.put(path + query, content=body)
            if put.status_code != 200 and key == "/alpha/fast/w":
                mproxy.store().put("/alpha/fast/w", body)
            answers.append((_normal(put), _normal(c.delete(path + query)),
                            _normal(c.delete(path + query))))
    assert answers[0] == answers[1]

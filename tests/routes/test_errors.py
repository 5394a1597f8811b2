"""Error mapping at the app boundary, in-process on the memory store."""

from __future__ import annotations


def test_an_unexpected_exception_is_a_json_500_with_the_details_in_the_log(mproxy, caplog,
                                                                         monkeypatch):
    async def broken(*_a: object, **_k: object) -> object:
        raise RuntimeError("a bug deep inside")

    monkeypatch.setattr(mproxy.state.kv, "get", broken)
    with mproxy.client(mproxy.tokens["alpha"]) as c:
        r = c.get("/v1/kv/alpha/x")
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal"
    assert "bug deep inside" not in r.text and "Traceback" not in r.text
    assert "a bug deep inside" in caplog.text


def test_unknown_routes_and_methods_have_the_json_error_body(mproxy):
    with mproxy.client(mproxy.tokens["alpha"]) as c:
        assert c.get("/nope").json()["error"]["code"] == "not_found"
        r = c.request("PATCH", "/v1/kv/alpha/x")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_every_query_flag_is_checked_whichever_mode_wins(mproxy):
    # Found by schemathesis: ?recursive=true&list=30288044 used to be served.
    with mproxy.client(mproxy.tokens["alpha"]) as c:
        for query in ("recursive=true&list=30288044", "list=true&recursive=maybe",
                      "list=2", "recursive=yes&list=no"):
            r = c.get(f"/v1/kv/alpha/?{query}")
            expected = 200 if query == "recursive=yes&list=no" else 422
            assert r.status_code == expected, (query, r.text)

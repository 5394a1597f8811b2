"""Rate limits (issue 13, part 3) through the real TLS proxy: 429 at the configured rate."""

from __future__ import annotations

import time

from vaultkey.client import Client
from vaultkey.errors import RateLimited


def _hammer(proxy, token: str, seconds: float) -> tuple[int, int, float, list[str]]:
    """Requests as fast as one client can for *seconds*: (passed, refused, elapsed, headers)."""
    passed = refused = 0
    retry_after: list[str] = []
    with proxy.client(token) as c:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            r = c.get("/v1/kv/alpha/limited")
            if r.status_code == 429:
                refused += 1
                retry_after.append(r.headers.get("retry-after", ""))
                assert r.json()["error"]["code"] == "rate_limited"
            else:
                assert r.status_code == 404  # passed the limit (the key does not exist)
                passed += 1
    return passed, refused, elapsed, retry_after


def test_the_per_token_limit_answers_429_at_the_configured_rate(proxy_factory):
    proxy = proxy_factory(extra_args=["--rate-limit", "20", "--rate-burst", "5"])
    alpha, other = proxy.create_token("alpha"), proxy.create_token("alpha")
    passed, refused, elapsed, retry_after = _hammer(proxy, alpha, 3.0)
    expected = 5 + 20 * elapsed
    print(f"\nper token, 20/s burst 5: {passed} passed and {refused} refused in "
          f"{elapsed:.2f} s; expected {expected:.1f} to pass ({passed / expected:.1%})")
    assert abs(passed - expected) <= 0.1 * expected
    assert refused > passed and set(retry_after) == {"1"}
    # another token of the same group has its own bucket
    assert _hammer(proxy, other, 0.2)[0] >= 5
    with proxy.client() as anon:
        assert 'vaultkey_rate_limited_total{limit="token"}' in anon.get("/metrics").text
    with Client(proxy.addr, alpha, key=proxy.key_path("alpha"), cacert=str(proxy.ca_path),
                retries=0) as vk:
        for _ in range(30):
            try:
                vk.list("/alpha/")
            except RateLimited as exc:
                assert exc.exit_code == 8 and "too many requests with this token" in exc.message
                break
        else:
            raise AssertionError("the SDK never saw RateLimited")


def test_failed_authentications_are_limited_per_address(proxy_factory):
    proxy = proxy_factory(extra_args=["--auth-failure-limit", "1", "--rate-burst", "3"])
    good = proxy.create_token("alpha")
    codes = []
    with proxy.client("vkt_0000000000000000.not-a-real-token-at-all-xxxxxxxxxxxxxxx") as bad:
        for _ in range(6):
            codes.append(bad.get("/v1/kv/alpha/x").status_code)
    assert codes[:3] == [401, 401, 401] and set(codes[3:]) == {429}
    with proxy.client(good) as c:  # the address is slowed down, whatever token it shows now
        assert c.get("/v1/kv/alpha/x").status_code == 429
        time.sleep(1.1)
        assert c.get("/v1/kv/alpha/x").status_code == 404


def test_the_per_address_limit_counts_every_request(proxy_factory):
    proxy = proxy_factory(extra_args=["--address-rate-limit", "10", "--rate-burst", "2"])
    tokens = []
    for _ in range(3):  # the admin's requests count too: one at a time
        tokens.append(proxy.create_token("alpha"))
        time.sleep(0.3)
    time.sleep(0.5)  # the bucket is full again
    codes = []
    for token in tokens:  # three tokens, one address
        with proxy.client(token) as c:
            codes += [c.get("/v1/kv/alpha/x").status_code for _ in range(2)]
    assert codes.count(429) >= 3

"""Token buckets of the proxy's rate limits."""

from __future__ import annotations

from vaultkey.proxy.ratelimit import Buckets, RateLimits


def test_a_bucket_refills_at_its_rate_and_never_above_its_burst():
    b = Buckets(rate=10.0, burst=3)
    assert [b.take("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert abs(b.take("k", now=0.0) - 0.1) < 1e-9
    assert b.take("k", now=0.1) == 0.0  # one more after 1/rate
    assert [b.take("k", now=100.0) for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # capped at 3


def test_a_dry_check_counts_nothing_and_keys_are_separate():
    b = Buckets(rate=1.0, burst=1)
    assert b.take("a", now=0.0, dry=True) == 0.0 and b.take("a", now=0.0) == 0.0
    assert b.take("a", now=0.0, dry=True) > 0 and b.take("b", now=0.0) == 0.0


def test_only_the_most_recent_keys_are_kept():
    b = Buckets(rate=1.0, burst=1, max_keys=2)
    for key in ("a", "b", "c"):
        b.take(key, now=0.0)
    assert b.take("a", now=0.0) == 0.0  # forgotten, so full again
    assert b.take("c", now=0.0) > 0


def test_limits_are_off_unless_configured():
    assert not RateLimits().active
    limits = RateLimits(per_token=5)
    assert limits.active and limits.token is not None and limits.token.burst == 5
    assert limits.address is None and limits.auth_failures is None
    assert RateLimits(auth_failures=0.5, burst=0).auth_failures.burst == 1.0  # type: ignore[union-attr]

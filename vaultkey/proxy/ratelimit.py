"""Request-rate limits: token buckets per token, per client address, and for failed logins.

All optional (``--rate-limit``, ``--address-rate-limit``, ``--auth-failure-limit``, with
``--rate-burst``). A bucket holds up to *burst* requests and refills at *rate* per second;
a request that finds it empty gets ``429`` with ``Retry-After`` (the seconds until the
next request would pass), before the proxy does any work for it::

    >>> b = Buckets(rate=2.0, burst=2)
    >>> [b.take("t", now=0.0), b.take("t", now=0.0), b.take("t", now=0.0)]
    [0.0, 0.0, 0.5]
    >>> b.take("t", now=0.5)
    0.0

Failed authentications are charged to the client's address and checked *before* the token
is looked at, so guessing tokens from one address is slowed to the configured rate.
Buckets are kept for the most recently seen 100,000 keys; an older one starts full again.
The address is the TCP peer's: behind a load balancer, that is the balancer (limit per
address there, or per token here).
"""

from __future__ import annotations

import time
from collections import OrderedDict

MAX_KEYS = 100_000


class Buckets:
    """Token buckets by key (a token id, an address), at most :data:`MAX_KEYS` of them."""

    def __init__(self, rate: float, burst: float, max_keys: int = MAX_KEYS) -> None:
        self.rate, self.burst, self.max_keys = rate, max(1.0, burst), max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, *, now: float | None = None, dry: bool = False) -> float:
        """0.0 if a request for *key* may pass (and, unless *dry*, count it), else the
        seconds until one may."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
        if not wait and not dry:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


class RateLimits:
    """The proxy's three optional limits (None: that limit is off)."""

    def __init__(self, per_token: float = 0.0, per_address: float = 0.0,
                 auth_failures: float = 0.0, burst: float = 0.0) -> None:
        def buckets(rate: float) -> Buckets | None:
            return Buckets(rate, burst or max(1.0, rate)) if rate > 0 else None

        self.token, self.address = buckets(per_token), buckets(per_address)
        self.auth_failures = buckets(auth_failures)

    @property
    def active(self) -> bool:
        return any((self.token, self.address, self.auth_failures))


__all__ = ["MAX_KEYS", "Buckets", "RateLimits"]

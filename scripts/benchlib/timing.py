"""Medians, percentiles and per-call timing loops (all results in seconds unless named)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: Sequence[float], q: float) -> float:
    """The *q* quantile (0..1) by nearest rank of the sorted values."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[round(q * (len(s) - 1))]


def time_each(call: Callable[[], object], n: int, warmup: int = 0) -> list[float]:
    """Run *call* *warmup* times untimed, then *n* times; each call's duration."""
    for _ in range(warmup):
        call()
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        call()
        out.append(clock() - t0)
    return out

"""Durations given by people: ``"250ms"``, ``"2s"``, ``"1m"``, or a number of seconds.

Shared by ``vaultkey render`` (waits, timeouts) and ``vaultkey exec`` (grace, debounce)::

    >>> duration("250ms", "--wait"), duration("2s", "--grace"), duration(3, "timeout")
    (0.25, 2.0, 3.0)
"""

from __future__ import annotations

import re

from vaultkey.errors import UsageError

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


def duration(text: object, what: str) -> float:
    """Seconds; a UsageError naming *what* for anything else (negative, other units)."""
    if isinstance(text, int | float) and not isinstance(text, bool) and text >= 0:
        return float(text)
    match = _DURATION.fullmatch(str(text).strip())
    if match is None:
        raise UsageError(f"{what}: {text!r} is not a duration (e.g. 500ms, 2s, 1m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


__all__ = ["duration"]

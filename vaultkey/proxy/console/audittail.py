"""The tail of the audit log, read backwards from its end in bounded memory.

``GET /v1/audit`` (admin only) shows the last lines that match a filter. The log
can be gigabytes, so it is never read whole: blocks are read from the end
towards the start until enough matching lines are found or a byte budget is
spent. Lines that do not parse as a JSON object (a line still being written, a
line longer than :data:`MAX_LINE`) are skipped::

    found = read_tail("/var/log/vaultkey/audit.log", 200,
                      AuditFilter(group="payments", decision="deny"))
    found.lines      # up to 200 dicts, oldest first (newest last)
    found.complete   # True if the whole file was searched
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

BLOCK = 64 * 1024
MAX_LINE = 64 * 1024  # an audit line is a few hundred bytes; longer is not one of ours
MAX_SCAN = 32 * 1024 * 1024  # bytes searched per request, at most


@dataclass(frozen=True)
class AuditFilter:
    """Keep lines whose group is *group*, whose path starts with *path* and whose
    decision is *decision* (each only when given)."""

    group: str | None = None
    path: str | None = None
    decision: str | None = None

    def keep(self, line: dict[str, Any]) -> bool:
        if self.group is not None and line.get("group") != self.group:
            return False
        if self.decision is not None and line.get("decision") != self.decision:
            return False
        found = line.get("path")
        return self.path is None or (isinstance(found, str) and found.startswith(self.path))


@dataclass
class Tail:
    lines: list[dict[str, Any]] = field(default_factory=list)
    scanned: int = 0  # bytes read
    complete: bool = False  # the search reached the start of the file


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        line = json.loads(raw)
    except ValueError:  # half-written, or not an audit line: skipped, never an error
        return None
    return line if isinstance(line, dict) else None


def read_tail(path: str, limit: int, keep: AuditFilter, *, budget: int = MAX_SCAN) -> Tail:
    """The last *limit* lines of *path* that *keep* accepts, newest last."""
    out = Tail()
    newest_first: list[dict[str, Any]] = []

    def consider(raw: bytes) -> None:
        if raw.strip() and len(newest_first) < limit:
            line = _parse(raw)
            if line is not None and keep.keep(line):
                newest_first.append(line)

    with open(path, "rb") as fh:
        pos = fh.seek(0, os.SEEK_END)
        carry = b""  # the start of a line whose end was read already
        dropping = False  # inside a line longer than MAX_LINE
        while pos > 0 and len(newest_first) < limit and out.scanned < budget:
            size = min(BLOCK, pos)
            pos -= size
            fh.seek(pos)
            pieces = (fh.read(size) + carry).split(b"\n")
            out.scanned += size
            if dropping:  # the last piece continues the overlong line
                dropping = len(pieces) == 1
                pieces[-1] = b""
            carry = pieces[0]
            for raw in reversed(pieces[1:]):
                consider(raw)
            if len(carry) > MAX_LINE:
                carry, dropping = b"", True
        if pos == 0 and not dropping:
            consider(carry)
        out.complete = pos == 0
    out.lines = newest_first[::-1]
    return out


__all__ = ["MAX_SCAN", "AuditFilter", "Tail", "read_tail"]

"""The audit log: one JSON line per ``/v1`` request, written by a background thread.

Fail-safe by construction: a request *reserves* a line before it is handled
and the reservation is only given back once its line is on disk. When every
slot is taken (the disk is stuck), new requests are refused with 503 instead
of being served unaudited. :meth:`AuditWriter.close` drains what is queued;
the app's shutdown calls it, so a SIGTERM loses no lines::

    writer = AuditWriter.open("/var/log/vaultkey/audit.log")
    if writer.reserve():
        ...handle the request...
        writer.write('{"op": "kv.read", ...}')
    writer.close()
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import IO, Literal

from vaultkey.errors import UsageError

log = logging.getLogger(__name__)
MAX_PENDING_LINES = 10_000
_STOP = object()
_REOPEN = object()


class _Extra(str):
    """A line written without a slot."""

    __slots__ = ()


# Where the middleware leaves the request's record in the ASGI scope.
SCOPE_KEY = "vaultkey.audit"


@dataclass
class AuditRecord:
    """What one ``/v1`` request did: filled in as the request goes, written once at its end.

    Never holds a token or a value: the token's public id only.
    """

    claimed_token_id: str | None = None  # from the presented token; not yet verified
    token_id: str | None = None  # set once the token is verified
    group: str | None = None
    op: str | None = None
    path: str | None = None
    decision: Literal["allow", "deny"] | None = None
    revision: int | None = None
    events: int | None = None  # for a stream: how many events it delivered

    def line(self, method: str, raw_path: str, status: int, seconds: float,
             suffix: str = "") -> str:
        """The JSON line. ASCII only: every non-ASCII character (U+2028 and U+2029
        included) is escaped, so any line-oriented reader sees one record per line."""
        return json.dumps({
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "token_id": self.token_id, "claimed_token_id": self.claimed_token_id,
            "group": self.group,
            "op": (self.op or f"{method} {raw_path[:64]}") + (f".{suffix}" if suffix else ""),
            "path": self.path, "decision": self.decision, "status": status,
            "revision": self.revision, "ms": round(seconds * 1000, 3),
            **({} if self.events is None else {"events": self.events}),
        }, ensure_ascii=True)


def _open_append(path: str) -> IO[str]:
    """Open for appending; a new file is created 0600 (it names token ids and paths)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return open(fd, "a", encoding="utf-8")


class AuditWriter:
    def __init__(self, stream: IO[str], capacity: int = MAX_PENDING_LINES,
                 path: str | None = None) -> None:
        self._stream = stream
        self._path = path
        self._closed = False
        self.failures = 0  # failed write attempts (each retried until it succeeds)
        self._slots = threading.BoundedSemaphore(capacity)
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._drain, name="vaultkey-audit", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, path: str, capacity: int = MAX_PENDING_LINES) -> AuditWriter:
        try:
            stream = _open_append(path)
        except OSError as exc:
            raise UsageError(f"cannot open the audit log {path}: {exc.strerror}",
                             hint="create its directory or fix --audit-log") from exc
        return cls(stream, capacity, path)

    def reopen(self) -> None:
        """Close and reopen the file by name after the lines queued so far (logrotate:
        rename the file, then send SIGUSR1 or SIGHUP). Thread-safe; never blocks."""
        if self._path is not None and not self._closed:
            self._queue.put(_REOPEN)

    def reserve(self) -> bool:
        """Take a slot for one line; False when the writer is too far behind or closed."""
        return not self._closed and self._slots.acquire(blocking=False)

    def write(self, line: str) -> None:
        """Queue a line for a slot taken with :meth:`reserve` (never blocks, never drops)."""
        self._queue.put(line)

    def write_extra(self, line: str) -> None:
        """Queue a line that has no slot: the closing line of a stream, whose opening line
        used the request's slot (a stream must not hold a slot for its whole life)."""
        self._queue.put(_Extra(line))

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if item is _REOPEN:
                self._reopen_now()
                continue
            self._write_until_done(f"{item}\n")
            if not isinstance(item, _Extra):
                self._slots.release()

    def _write_until_done(self, text: str) -> None:
        """Retry one line until the disk takes it. Its slot stays taken meanwhile, so
        while writes fail the slots run out and requests are refused, not unaudited;
        once the disk recovers, everything queued is written and slots come back."""
        delay = 0.05
        while True:
            try:
                self._stream.write(text)
                self._stream.flush()
                return
            except Exception:  # any failure: never lose the line, never kill this thread
                self.failures += 1
                if self.failures == 1 or self.failures % 100 == 0:
                    log.exception("cannot write the audit log (%d failures so far); "
                                  "refusing requests once it falls behind", self.failures)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _reopen_now(self) -> None:
        assert self._path is not None
        try:
            fresh = _open_append(self._path)
        except OSError as exc:  # keep writing to the old file rather than lose lines
            log.error("cannot reopen the audit log %s: %s; still writing to the old file",
                      self._path, exc.strerror)
            return
        old, self._stream = self._stream, fresh
        old.close()
        log.info("audit log reopened: %s", self._path)

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new lines, write everything queued so far, then stop (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("the audit log did not drain within %.0fs; %d lines unwritten",
                      timeout, self._queue.qsize())
            return  # the thread still owns the stream
        self._stream.close()

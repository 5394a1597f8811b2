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

import logging
import queue
import threading
from pathlib import Path
from typing import IO

from vaultkey.errors import UsageError

log = logging.getLogger(__name__)
MAX_PENDING_LINES = 10_000
_STOP = object()


class AuditWriter:
    def __init__(self, stream: IO[str], capacity: int = MAX_PENDING_LINES) -> None:
        self._stream = stream
        self._slots = threading.BoundedSemaphore(capacity)
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._drain, name="vaultkey-audit", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, path: str, capacity: int = MAX_PENDING_LINES) -> AuditWriter:
        try:
            stream = Path(path).open("a", encoding="utf-8")  # noqa: SIM115 - owned by the writer
        except OSError as exc:
            raise UsageError(f"cannot open the audit log {path}: {exc.strerror}",
                             hint="create its directory or fix --audit-log") from exc
        return cls(stream, capacity)

    def reserve(self) -> bool:
        """Take a slot for one line; False when the writer is too far behind."""
        return self._slots.acquire(blocking=False)

    def release(self) -> None:
        """Give back a slot whose line will not be written (e.g. a request that never ran)."""
        self._slots.release()

    def write(self, line: str) -> None:
        """Queue a line for a slot taken with :meth:`reserve` (never blocks, never drops)."""
        self._queue.put(line)

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._stream.write(f"{item}\n")
                self._stream.flush()
            except OSError:
                # Keep the slot: while the disk fails, reservations run out and the
                # proxy refuses requests rather than serve them unaudited.
                log.exception("cannot write the audit log")
                continue
            self._slots.release()

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued so far, then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._stream.close()

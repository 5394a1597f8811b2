"""Rollback detection on the reader's side: the highest counter seen for each path.

Every envelope carries a writer counter (docs/FORMAT.md section 7), authenticated by
the AEAD and, where required, by the writer's signature. A reader that has seen
counter N for a path refuses any value there with a lower counter: an older envelope
put back in etcd (by someone with write access to etcd, or a compromised proxy) is
detected instead of silently served. docs/SECURITY.md says what this does not catch.

The SDK keeps marks in memory; with a file (the CLI's default, under
``$XDG_STATE_HOME/vaultkey/``) they persist across processes. The file is JSON, one
table of marks per proxy address, updated under a lock and replaced atomically, so
two processes never lose each other's marks::

    >>> marks = Marks()
    >>> marks.check("/app/db", 5, revision=10)
    >>> marks.check("/app/db", 7, revision=12)
    >>> marks.check("/app/db", 5, revision=10, history=True)  # a watch replaying history
    >>> try:
    ...     marks.check("/app/db", 6, revision=13)
    ... except RollbackDetected as exc:
    ...     print(exc.message[:28])
    counter 6 is lower than 7, t
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator

from vaultkey.errors import RollbackDetected, UsageError

MARKS_OFF = "off"


def default_marks_file() -> str:
    """``$XDG_STATE_HOME/vaultkey/marks.json`` (``~/.local/state/vaultkey/marks.json``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return os.path.join(base, "vaultkey", "marks.json")


class Marks:
    """Per-path high-water marks of one reader, for one proxy address (*scope*)."""

    def __init__(self, path: str | None = None, scope: str = "") -> None:
        self.path = path
        self.scope = scope
        self._seen: dict[str, int] = {}
        self._revisions: dict[str, int] = {}  # the etcd revision each mark was seen at
        self._loaded = path is None
        self._stamp: tuple[int, int] | None = None  # the file's (mtime, size) when read
        # Why a lock: a live view or a registration follows in another thread and checks
        # values with the same client's marks.
        self._lock = threading.RLock()
        # Inside batch(): the marks raised, saved at its end.
        self._pending: dict[str, tuple[int, int]] | None = None

    def get(self, key: str) -> int:
        self._load()
        self._refresh()
        return self._seen.get(key, 0)

    def check(self, key: str, counter: int, *, revision: int = 0,
              history: bool = False) -> None:
        """Refuse *counter* for *key* if it is below the mark; else raise the mark to it.

        Counter 0 means "not set" (a writer older than counters); it is accepted only
        while the reader has no mark for the path. *history*: a watch replaying changes
        from an older revision; a value from before the revision the mark was seen at is
        history, not a rollback (a read of the current value never gets this benefit).
        """
        with self._lock:
            self._check(key, counter, revision, history)

    def _check(self, key: str, counter: int, revision: int, history: bool) -> None:
        from vaultkey.envelope import COUNTER_LEEWAY_US

        if counter > time.time_ns() // 1000 + COUNTER_LEEWAY_US:
            raise RollbackDetected(
                f"counter {counter} is more than a day ahead of this machine's clock: refused, "
                "so that a planted counter cannot freeze this path for every reader",
                hint="if the writer's clock is wrong, fix it and write the value again")
        mark = self.get(key)
        if counter < mark and history and revision < self._revisions.get(key, 0):
            return
        if counter < mark:
            raise RollbackDetected(
                f"counter {counter} is lower than {mark}, the highest this reader "
                "has seen for this path: an older value was put back",
                hint="if a writer really restored an old value on purpose, it must write it "
                "again (a new write gets a higher counter); marks are kept in memory, or in "
                "the file of VAULTKEY_MARKS (the CLI's: $XDG_STATE_HOME/vaultkey/marks.json)")
        if counter > mark:
            self._seen[key] = counter
            self._revisions[key] = revision
            if self._pending is not None:
                self._pending[key] = (counter, revision)
            elif self.path is not None:
                self._save({key: (counter, revision)})

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Save the marks raised inside the block once, at its end (a listing's values)."""
        if self._pending is not None or self.path is None:
            yield
            return
        self._pending = {}
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            if pending:
                self._save(pending)

    def snapshot(self) -> dict[str, int]:
        self._load()
        return dict(self._seen)

    def _load(self) -> None:
        if self._loaded:
            return
        assert self.path is not None
        for key, (counter, revision) in _read(self.path).get(self.scope, {}).items():
            self._seen[key], self._revisions[key] = counter, revision
        self._loaded = True  # only once read: a corrupt file keeps failing, never reads as 0
        self._stamp = _stamp(self.path)

    def _refresh(self) -> None:
        """Take in the marks other processes saved since we last read the file, so a stale
        process never accepts what another already knows to be a rollback."""
        if self.path is None or _stamp(self.path) == self._stamp:
            return
        table = _read(self.path).get(self.scope, {})
        for key, (counter, revision) in table.items():
            if counter > self._seen.get(key, 0):
                self._seen[key], self._revisions[key] = counter, revision
        self._stamp = _stamp(self.path)

    def _save(self, raised: dict[str, tuple[int, int]]) -> None:
        """Merge *raised* into the file under its lock: another process's higher marks win."""
        assert self.path is not None
        with _locked(self.path):
            data = _read(self.path)
            table = data.setdefault(self.scope, {})
            for key, mark in raised.items():
                table[key] = max(mark, table.get(key, (0, 0)))
            for key, (counter, revision) in table.items():
                self._seen[key], self._revisions[key] = counter, revision
            _write(self.path, data)
            self._stamp = _stamp(self.path)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


Table = dict[str, tuple[int, int]]  # path -> (counter, etcd revision it was seen at)


def _read(path: str) -> dict[str, Table]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the rollback marks file {path}: {exc}",
                         hint="fix or remove it (removing it forgets every mark)") from exc
    scopes = data.get("scopes") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(scopes, dict):
        raise UsageError(f"{path} is not a vaultkey marks file (version 1)")
    try:
        return {str(s): {str(k): _mark(v) for k, v in t.items()} for s, t in scopes.items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path} is not a vaultkey marks file (bad entry: {exc})") from exc


def _mark(value: object) -> tuple[int, int]:
    """One entry: ``[counter, revision]``, two non-negative integers."""
    if (not isinstance(value, list) or len(value) != 2
            or not all(type(v) is int and v >= 0 for v in value)):
        raise ValueError(f"{value!r} is not [counter, revision]")
    return value[0], value[1]


def _write(path: str, scopes: dict[str, Table]) -> None:
    from vaultkey._files import write_private

    temporary = f"{path}.{os.getpid()}.tmp"
    text = json.dumps({"version": 1, "scopes": {s: {k: list(v) for k, v in t.items()}
                                                for s, t in scopes.items()}},
                      indent=1, sort_keys=True)
    write_private(temporary, text.encode("utf-8"))
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)  # a crash leaves the old file or the new one, never a torn one
    finally:
        os.close(fd)
    os.replace(temporary, path)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    import fcntl

    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


__all__ = ["MARKS_OFF", "Marks", "default_marks_file"]

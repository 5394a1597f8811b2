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
    >>> marks.check("/app/db", 5)
    >>> marks.check("/app/db", 7)
    >>> try:
    ...     marks.check("/app/db", 6)
    ... except RollbackDetected as exc:
    ...     print(exc.message[:28])
    counter 6 is lower than 7, t
"""

from __future__ import annotations

import contextlib
import json
import os
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
        self._loaded = path is None
        self._pending: dict[str, int] | None = None  # inside batch(): saved at its end

    def get(self, key: str) -> int:
        self._load()
        return self._seen.get(key, 0)

    def check(self, key: str, counter: int) -> None:
        """Refuse *counter* for *key* if it is below the mark; else raise the mark to it.

        Counter 0 means "not set" (a writer older than counters); it is accepted only
        while the reader has no mark for the path."""
        mark = self.get(key)
        if counter < mark:
            raise RollbackDetected(
                f"counter {counter} is lower than {mark}, the highest this reader "
                "has seen for this path: an older value was put back",
                hint="if a writer really restored an old value on purpose, it must write it "
                "again (a new write gets a higher counter); marks are kept in memory, or in "
                "the file of VAULTKEY_MARKS (the CLI's: $XDG_STATE_HOME/vaultkey/marks.json)")
        if counter > mark:
            self._seen[key] = counter
            if self._pending is not None:
                self._pending[key] = counter
            elif self.path is not None:
                self._save({key: counter})

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
        self._loaded = True
        assert self.path is not None
        self._seen.update(_read(self.path).get(self.scope, {}))

    def _save(self, raised: dict[str, int]) -> None:
        assert self.path is not None
        with _locked(self.path):
            data = _read(self.path)
            table = data.setdefault(self.scope, {})
            for key, counter in raised.items():
                table[key] = max(counter, int(table.get(key, 0)))
            self._seen.update(table)
            _write(self.path, data)


def _read(path: str) -> dict[str, dict[str, int]]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the rollback marks file {path}: {exc}",
                         hint="fix or remove it (removing it forgets every mark)") from exc
    scopes = data.get("scopes") if isinstance(data, dict) else None
    if data.get("version") != 1 or not isinstance(scopes, dict):
        raise UsageError(f"{path} is not a vaultkey marks file (version 1)")
    return {str(s): {str(k): int(v) for k, v in t.items()} for s, t in scopes.items()}


def _write(path: str, scopes: dict[str, dict[str, int]]) -> None:
    from vaultkey._files import write_private

    temporary = f"{path}.{os.getpid()}.tmp"
    text = json.dumps({"version": 1, "scopes": scopes}, indent=1, sort_keys=True)
    write_private(temporary, text.encode("utf-8"))
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

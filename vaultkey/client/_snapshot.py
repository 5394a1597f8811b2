"""One consistent view of several prefixes and keys: everything read at one etcd revision.

What ``vaultkey render`` needs (docs/ANCHORS-dynamic: confd pins every batch to the first
batch's revision): a template that reads ``/app/db/`` and ``/shared/tls/ca`` must never mix
a value from before a change with one from after it. The first read fixes the revision;
every other read names it (``?revision=``), so the proxy answers from etcd's history at
that revision. If etcd compacted it meanwhile, the whole snapshot is read again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from vaultkey.client._core import Op, Operations, _listed, _url
from vaultkey.client._transport import Request
from vaultkey.errors import NotFound, Unavailable
from vaultkey.paths import validate_key, validate_prefix

_ATTEMPTS = 3


@dataclass(frozen=True)
class Snapshot:
    """Decrypted values at one etcd revision. ``values`` is read-only."""

    revision: int
    values: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))


def op_snapshot(ops: Operations, prefixes: Sequence[str], keys: Sequence[str],
                at: int | None = None) -> Op[Snapshot]:
    """Every value under *prefixes* and every one of *keys* (absent keys are left out), at
    revision *at* or, if None, at the revision of the first read."""
    pfxs = [validate_prefix(p) for p in prefixes]
    wanted = [validate_key(k) for k in keys]
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return (yield from _read_all(ops, pfxs, wanted, at))
        except Unavailable as exc:
            # Why only this: a revision compacted between the first read and the others.
            if "compacted" not in exc.message or attempt == _ATTEMPTS or at is not None:
                raise
    raise AssertionError("unreachable")


def _read_all(ops: Operations, prefixes: list[str], keys: list[str],
              at: int | None) -> Op[Snapshot]:
    values: dict[str, bytes] = {}
    revision = at
    history = at is not None  # asked for the past: older than a mark is not a rollback
    for pfx in prefixes:
        params = {"recursive": "true"} | ({} if revision is None else {"revision": str(revision)})
        body = (yield Request("GET", _url("/v1/kv", pfx), params=params,
                              headers=ops._read_headers())).body
        revision = revision or int(body["revision"])
        for entry in body["entries"]:
            key = _listed(entry["path"], pfx)
            values[key] = ops._decrypt(key, entry, history=history).value
    for key in keys:
        if key in values or any(key.startswith(p) for p in prefixes):
            continue  # read with its prefix (and absent from it: absent)
        pinned = None if revision is None else {"revision": str(revision)}
        try:
            entry = (yield Request("GET", _url("/v1/kv", key), params=pinned,
                                   headers=ops._read_headers())).body
        except NotFound:
            continue
        if revision is None:
            # Only keys, none read yet: pin the snapshot to this key's last write, and read
            # it again there, so all of them are as of one revision.
            revision = max(int(entry["revision"]), ops.seen_revision)
            entry = (yield Request("GET", _url("/v1/kv", key),
                                   params={"revision": str(revision)})).body
        values[key] = ops._decrypt(key, entry, history=history).value
    ops._saw(revision or 0)
    return Snapshot(revision or ops.seen_revision, MappingProxyType(values))


__all__ = ["Snapshot", "op_snapshot"]

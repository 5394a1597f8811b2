"""Listings and recursive reads that never load what the caller may not read.

Three steps, all at one etcd revision:

1. enumerate **keys only**, and only in the ranges where the group's rules can
   grant ``read`` (:meth:`PolicySet.read_ranges`); other subtrees are never
   enumerated at all;
2. keep the keys the caller may read and whose parent it may list;
3. fetch values only for those keys, as runs of keys that are adjacent in
   etcd (so no other key's value can come back), in bounded batches.

The "too large for one answer" limit counts only values the caller may read,
so the error reveals nothing about other data. Memory per request is bounded
by one key page, the readable key names, and ``MAX_ANSWER_BYTES`` plus one
batch of values (see docs/OPERATIONS.md)::

    listing = await readable_keys(kv, ctx.authz, "/app/")
    entries = await load_values(kv, listing, "/app/")
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vaultkey.errors import ValueTooLarge
from vaultkey.proxy.authz import Scope
from vaultkey.proxy.store.base import Entry, KVStore

KEY_PAGE = 1000  # keys per etcd request while enumerating
VALUE_BATCH = 32  # values per etcd request (at most 32 x 1.5 MiB in flight)
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # readable envelopes in one recursive answer
MAX_ANSWER_KEYS = 100_000  # readable keys in one listing


@dataclass
class Listing:
    """The readable keys under a prefix, grouped into runs adjacent in etcd."""

    revision: int = 0
    keys: list[str] = field(default_factory=list)
    runs: list[list[str]] = field(default_factory=list)


async def readable_keys(kv: KVStore, authz: Scope, prefix: str,
                        at: int | None = None) -> Listing:
    """Enumerate (keys only) what the caller may read and list under *prefix* (at etcd
    revision *at*, else the current one)."""
    out = Listing()
    revision: int | None = at
    for target, exact in authz.read_ranges(prefix):
        after: bytes | None = None
        while True:
            page = await kv.list_keys(target, exact=exact, revision=revision, after=after,
                                      limit=KEY_PAGE)
            revision = page.revision
            run: list[str] = []
            for path in page.paths:
                if path is not None and authz.may_list_key(path):
                    run.append(path)
                    continue
                _close(out, run)  # an unreadable or foreign key ends the run
                run = []
            _close(out, run)
            if len(out.keys) > MAX_ANSWER_KEYS:
                raise ValueTooLarge(f"more than {MAX_ANSWER_KEYS} readable keys under {prefix}",
                                    hint="list a narrower prefix")
            if page.after is None:
                break
            after = page.after
    out.revision = revision if revision is not None else await kv.ping()
    return out


def _close(out: Listing, run: list[str]) -> None:
    if run:
        out.keys.extend(run)
        out.runs.append(run)


async def load_values(kv: KVStore, listing: Listing, prefix: str) -> list[Entry]:
    """The envelopes of the listed keys, at the listing's revision."""
    entries: list[Entry] = []
    total = 0
    for run in listing.runs:
        for i in range(0, len(run), VALUE_BATCH):
            batch = run[i:i + VALUE_BATCH]
            wanted = set(batch)
            got = await kv.load_run(batch[0], batch[-1], len(batch), listing.revision)
            for entry in got:
                if entry.path not in wanted:  # never expected; never returned either
                    continue
                total += len(entry.value)
                if total > MAX_ANSWER_BYTES:
                    raise ValueTooLarge(
                        f"the values you may read under {prefix} exceed "
                        f"{MAX_ANSWER_BYTES // (1024 * 1024)} MiB, more than one answer carries",
                        hint="load a narrower prefix")
                entries.append(entry)
    return entries

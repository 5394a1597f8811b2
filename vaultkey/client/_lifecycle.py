"""``rewrap`` and ``rotate``: re-encrypt every value under a prefix to its current recipients.

* **rewrap** (a reader added, a key retired that was *not* compromised): each value keeps
  its data key and plaintext and gets one new stanza per current recipient
  (:func:`vaultkey.crypto.rewrap`); values already wrapped to exactly the current
  recipients are left alone, so running it again resumes an interrupted run.
* **rotate** (a member removed, a key compromised): each value is encrypted again under
  a fresh data key.

Both are sans-I/O operations like :mod:`vaultkey.client._core`. Each value is first read
and opened as any read is (the signature your trust store requires, your rollback
mark), so a planted value is refused, never laundered into a freshly signed one. Each
write is a compare-and-swap on the revision that was read, keeps the key's TTL lease,
and takes the next counter; a value written meanwhile by someone else is skipped and
reported (the proxy held that write to the current recipients already).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vaultkey.client._core import (
    Op,
    Operations,
    _check_signer,
    _listed,
    _url,
    clock_counter,
)
from vaultkey.client._transport import Request
from vaultkey.errors import Conflict
from vaultkey.keys import format_key_id
from vaultkey.paths import validate_prefix

if TYPE_CHECKING:
    from vaultkey.keys import PublicKey

# (values reached, total, path, start revision): first called with (0, total, "", start).
Progress = Callable[[int, int, str, int], object]


@dataclass(frozen=True)
class Outcome:
    path: str
    action: str  # rewrapped, rotated, current, would-rewrap, would-rotate, concurrent, resumed
    detail: str = ""
    revision: int = 0


@dataclass
class Report:
    """What ``rewrap`` / ``rotate`` did, value by value."""

    prefix: str
    mode: str  # "rewrap" or "rotate"
    start_revision: int
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for o in self.outcomes if o.action == action)

    def as_json(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "mode": self.mode, "dry_run": self.dry_run,
                "start_revision": self.start_revision,
                "values": [{"path": o.path, "action": o.action, "detail": o.detail,
                            "revision": o.revision} for o in self.outcomes]}


def op_reencrypt(ops: Operations, prefix: str, *, rotate: bool, dry_run: bool = False,
                 resume: int | None = None, progress: Progress | None = None) -> Op[Report]:
    """Rewrap (or, with *rotate*, re-encrypt) every value under *prefix* you may read.

    *resume*: the ``start_revision`` of an interrupted run; values written after it
    are done already (by that run, or by a writer since) and are skipped.
    """
    from vaultkey.crypto import _encrypt_validated, parse_for_decryption, rewrap

    pfx = validate_prefix(prefix)
    listing = (yield Request("GET", _url("/v1/kv", pfx), params={"recursive": "true"},
                             headers=ops._read_headers())).body
    entries = [(_listed(e["path"], pfx), e) for e in listing["entries"]]
    report = Report(pfx, "rotate" if rotate else "rewrap", int(listing["revision"]), dry_run)
    ops._saw(report.start_revision)
    signer = ops.signing_key()
    if progress is not None:
        progress(0, len(entries), "", report.start_revision)
    for done, (key, entry) in enumerate(entries, 1):
        if progress is not None:
            progress(done, len(entries), key, report.start_revision)
        revision = int(entry["revision"])
        if resume is not None and revision > resume:
            report.outcomes.append(Outcome(key, "resumed", f"written at {revision}, after "
                                           f"revision {resume}", revision))
            continue
        answer = (yield Request("GET", _url("/v1/recipients", key))).body
        recipients = ops._recipients_from(answer)
        item = ops._decrypt(key, entry)  # the reader's checks: signature, rollback mark
        env = parse_for_decryption(base64.b64decode(entry["envelope"]))
        change = _change(env.recipient_kids, recipients)
        if not rotate and not change:
            report.outcomes.append(Outcome(key, "current", "", revision))
            continue
        if dry_run:
            report.outcomes.append(Outcome(key, f"would-{report.mode}", change, revision))
            continue
        _check_signer(key, answer.get("signature"), signer)
        counter = max(env.counter + 1 if env.counter else clock_counter(),
                      ops.marks.get(key) + 1)
        if rotate:
            blob = _encrypt_validated(item.value, key, recipients, counter=counter,
                                      signer=signer)
        else:
            trust = ops._trust_or_none()
            blob = rewrap(base64.b64decode(entry["envelope"]), key, ops.secret_keys(),
                          recipients, counter=counter, signer=signer,
                          writers=None if trust is None else trust.writers_for(key))
        try:
            resp = yield Request("PUT", _url("/v1/kv", key), params={"keep_lease": "true"},
                                 headers={"Content-Type": "application/octet-stream",
                                          "If-Match": str(revision)}, content=blob)
        except Conflict:
            report.outcomes.append(Outcome(key, "concurrent", "changed since it was read; "
                                           "its writer's value stands", revision))
            continue
        ops._saw(resp.body["revision"])
        ops.marks.check(key, counter, revision=int(resp.body["revision"]))
        action = "rotated" if rotate else "rewrapped"
        report.outcomes.append(Outcome(key, action, change, int(resp.body["revision"])))
    return report


def _change(kids: tuple[bytes, ...], recipients: list[PublicKey]) -> str:
    """The recipient change, in words ("" if none): ``+vk1_... -vk1_...``."""
    have, want = set(kids), {r.kid for r in recipients}
    return " ".join([f"+{format_key_id(k)}" for k in sorted(want - have)]
                    + [f"-{format_key_id(k)}" for k in sorted(have - want)])


__all__ = ["Outcome", "Report", "op_reencrypt"]

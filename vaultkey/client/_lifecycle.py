"""``rewrap`` and ``rotate``: re-encrypt every value under a prefix to its current recipients.

* **rewrap** (a reader added, a key retired that was *not* compromised): each value keeps
  its data key and plaintext and gets one new stanza per current recipient
  (:func:`vaultkey.crypto.rewrap`); values already wrapped to exactly the current
  recipients are left alone, so running it again resumes an interrupted run.
* **rotate** (a member removed, a key compromised): each value is encrypted again under
  a fresh data key.

Both are sans-I/O operations like :mod:`vaultkey.client._core`. Each value is first read
and opened as any read is (the signature your trust store requires, your rollback
mark), so a planted value is refused; and it is signed again only if a writer you trust
signed it (or you say ``sign_unverified``), so nothing is laundered into a freshly signed
value. Each write is a compare-and-swap on the revision that was read, keeps the key's
TTL lease and takes the next counter; a value written meanwhile is read again and decided
again, never overwritten. A value that fails is reported, and the run goes on.
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
    next_counter,
)
from vaultkey.client._transport import Request
from vaultkey.errors import (
    Conflict,
    DecryptionError,
    MalformedEnvelope,
    NotFound,
    SignatureError,
    UsageError,
)
from vaultkey.keys import format_key_id
from vaultkey.paths import validate_prefix

if TYPE_CHECKING:
    from vaultkey.client.item import Item
    from vaultkey.keys import PublicKey

# (values reached, total, path, start revision): first called with (0, total, "", start).
Progress = Callable[[int, int, str, int], object]


@dataclass(frozen=True)
class Outcome:
    path: str
    # rewrapped, rotated, current, would-rewrap, would-rotate, concurrent, resumed, gone, failed
    action: str
    detail: str = ""
    revision: int = 0
    exit_code: int = 0  # of a failed one: the error's CLI exit code


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
                 resume: int | None = None, progress: Progress | None = None,
                 sign_unverified: bool = False) -> Op[Report]:
    """Rewrap (or, with *rotate*, re-encrypt) every value under *prefix* you may read.

    *resume*: the ``start_revision`` of an interrupted run; values written after it
    are done already (by that run, or by a writer since) and are skipped.
    *sign_unverified*: with a signing key, also re-sign values that carry no signature
    your trust store verifies (only after checking them: this vouches for them).
    A value that cannot be done (it does not open, fails your signature or rollback
    checks, or the proxy refuses it) is reported as ``failed`` and the run goes on.
    """
    pfx = validate_prefix(prefix)
    listing = (yield Request("GET", _url("/v1/kv", pfx), params={"recursive": "true"},
                             headers=ops._read_headers())).body
    entries = [(_listed(e["path"], pfx), e) for e in listing["entries"]]
    report = Report(pfx, "rotate" if rotate else "rewrap", int(listing["revision"]), dry_run)
    ops._saw(report.start_revision)
    if progress is not None:
        progress(0, len(entries), "", report.start_revision)
    job = _Job(ops, rotate, dry_run, sign_unverified)
    for done, (key, entry) in enumerate(entries, 1):
        if progress is not None:
            progress(done, len(entries), key, report.start_revision)
        revision = int(entry["revision"])
        if resume is not None and revision > resume:
            report.outcomes.append(Outcome(key, "resumed", f"written at {revision}, after "
                                           f"revision {resume}", revision))
            continue
        try:
            outcome = yield from job.value(key, entry)
        except (DecryptionError, MalformedEnvelope, UsageError) as exc:
            outcome = Outcome(key, "failed", exc.diagnostics(), revision, exc.exit_code)
        report.outcomes.append(outcome)
    return report


class _Job:
    """One run's settings, and how one value is done."""

    def __init__(self, ops: Operations, rotate: bool, dry_run: bool,
                 sign_unverified: bool) -> None:
        self.ops, self.rotate, self.dry_run = ops, rotate, dry_run
        self.sign_unverified = sign_unverified
        self.signer = ops.signing_key()
        self.mode = "rotate" if rotate else "rewrap"

    def value(self, key: str, entry: dict[str, Any]) -> Op[Outcome]:
        """Re-encrypt one value; a compare-and-swap lost to a writer reads it again and
        decides again (up to 3 times), so nothing is skipped on the listing's word."""
        for _attempt in range(3):
            outcome = yield from self._try(key, entry)
            if outcome is not None:
                return outcome
            try:
                entry = (yield Request("GET", _url("/v1/kv", key),
                                       headers=self.ops._read_headers())).body
            except NotFound:
                return Outcome(key, "gone", "deleted while this ran")
        return Outcome(key, "concurrent", "written again at each attempt; its writers' "
                       "values stand (run again later)", int(entry["revision"]))

    def _try(self, key: str, entry: dict[str, Any]) -> Op[Outcome | None]:
        """The value's outcome, or None if a concurrent write won the swap."""
        from vaultkey.crypto import _encrypt_validated, parse_for_decryption, rewrap

        ops, revision = self.ops, int(entry["revision"])
        answer = (yield Request("GET", _url("/v1/recipients", key))).body
        recipients = ops._recipients_from(answer)
        item = ops._decrypt(key, entry)  # the reader's checks: signature, rollback mark
        env = parse_for_decryption(base64.b64decode(entry["envelope"]))
        change = _change(env.recipient_kids, recipients)
        if not self.rotate and not change:
            return Outcome(key, "current", "", revision)
        self._check_signing(item)
        if self.dry_run:
            return Outcome(key, f"would-{self.mode}", change, revision)
        _check_signer(key, answer.get("signature"), self.signer)
        counter = next_counter(env.counter, ops.marks.get(key) + 1)
        if self.rotate:
            blob = _encrypt_validated(item.value, key, recipients, counter=counter,
                                      signer=self.signer)
        else:
            blob = rewrap(base64.b64decode(entry["envelope"]), key, ops.secret_keys(),
                          recipients, counter=counter, signer=self.signer)
        try:
            resp = yield Request("PUT", _url("/v1/kv", key), params={"keep_lease": "true"},
                                 headers={"Content-Type": "application/octet-stream",
                                          "If-Match": str(revision)}, content=blob)
        except Conflict:
            return None
        ops._saw(resp.body["revision"])
        ops.marks.check(key, counter, revision=int(resp.body["revision"]))
        return Outcome(key, "rotated" if self.rotate else "rewrapped", change,
                       int(resp.body["revision"]))

    def _check_signing(self, item: Item) -> None:
        """Never vouch for a value nobody trusted, and never drop a signature silently."""
        verified = item.signer is not None and item.signer.verified
        if self.signer is not None and not verified and not self.sign_unverified:
            raise SignatureError(
                "not re-signed: it carries no writer signature your trust store verifies, "
                "and signing it would vouch for it",
                hint="check the value, then run again with --sign-unverified (or add its "
                "writer to your trust store)")
        if self.signer is None and item.signer is not None:
            raise UsageError("it is signed, and re-encrypting it without a signing key would "
                             "drop the signature",
                             hint="set VAULTKEY_SIGNING_KEY (--signing-key) to a writer key "
                             "accepted here")


def _change(kids: tuple[bytes, ...], recipients: list[PublicKey]) -> str:
    """The recipient change, in words ("" if none): ``+vk1_... -vk1_...``."""
    have, want = set(kids), {r.kid for r in recipients}
    return " ".join([f"+{format_key_id(k)}" for k in sorted(want - have)]
                    + [f"-{format_key_id(k)}" for k in sorted(have - want)])


__all__ = ["Outcome", "Report", "op_reencrypt"]

"""Every "may this caller do this" question the proxy asks, in one place.

Routes, listings and write-time checks call an :class:`Authz` bound to the
caller's group and the request's audit record; nothing else decides access::

    authz = Authz(state.policies, state.escrow, "alpha", record)
    authz.require(Capability.READ, "/alpha/db")          # or PermissionDenied (403)
    visible = [p for p in paths if authz.may_list_key(p)]
    recipients = authz.recipients_for("/alpha/db")       # reader groups, keys, escrow
    check_envelope(body, recipients)                     # or MalformedEnvelope (422)

A denial is decided before the store is read, so its answer is the same
whether or not the key exists. Pure: no I/O, no secret keys.

Write-time checks (:func:`check_envelope`): a write is refused (422) unless
the body is a well-formed v1 envelope bound to the request path, carrying a
stanza for every key of every group that may read the path, and no stanza for
a key outside those groups (escrow keys excepted). Where a policy rule requires
writer signatures, it must also be signed by one of that rule's writers, and the
signature must verify (else :class:`~vaultkey.errors.SignatureRequired`, 422).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from vaultkey.envelope import COUNTER_LEEWAY_US, Envelope
from vaultkey.errors import MalformedEnvelope, PermissionDenied, SignatureRequired
from vaultkey.keys import PublicKey, format_key_id
from vaultkey.policy.engine import Capability
from vaultkey.policy.load import LoadedPolicies
from vaultkey.proxy.audit import AuditRecord
from vaultkey.signatures import Writers


@dataclass(frozen=True)
class Recipients:
    """Who a value at one path must be encrypted to."""

    path: str
    groups: tuple[tuple[str, tuple[PublicKey, ...]], ...]  # (reader group, its keys)
    escrow: tuple[PublicKey, ...]
    writers: Writers | None = None  # whose signature the path requires (None: none)

    @property
    def allowed_kids(self) -> set[bytes]:
        return {k.kid for _g, keys in self.groups for k in keys} | {k.kid for k in self.escrow}


@dataclass(frozen=True)
class Authz:
    """Decisions for one group within one request (records allow/deny for the audit)."""

    policies: LoadedPolicies
    escrow: tuple[PublicKey, ...]
    group: str
    record: AuditRecord
    _listable: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    def allowed(self, cap: Capability, path: str, *, is_prefix: bool = False) -> bool:
        return self.policies.policy_set.allowed(self.group, path, cap, is_prefix=is_prefix)

    def require(self, cap: Capability, path: str, *, is_prefix: bool = False) -> None:
        allowed = self.allowed(cap, path, is_prefix=is_prefix)
        self.record.decision = "allow" if allowed else "deny"
        if not allowed:
            raise PermissionDenied(f"group {self.group!r} may not {cap} {path}")

    def require_read_or_write(self, path: str) -> None:
        """For the recipients of *path*: readers and writers both need them."""
        allowed = self.may_read(path) or self.allowed(Capability.WRITE, path)
        self.record.decision = "allow" if allowed else "deny"
        if not allowed:
            raise PermissionDenied(f"group {self.group!r} may neither read nor write {path}")

    def may_read(self, path: str) -> bool:
        return self.allowed(Capability.READ, path)

    def require_conditional(self, path: str) -> None:
        """Conditional writes answer 409 or not depending on the key's state, so they
        would tell a caller without ``read`` whether the key exists."""
        if not self.may_read(path):
            raise PermissionDenied(
                f"conditional requests (If-Match / If-None-Match) on {path} need 'read'")

    def may_list_key(self, path: str) -> bool:
        """A listed key is shown only if the caller may read it *and* list its parent
        prefix, so a ``deny list`` on a sub-prefix cannot be bypassed from above."""
        parent = path.rsplit("/", 1)[0] + "/"
        if not self.may_read(path):
            return False
        listable = self._listable.get(parent)  # a listing's keys share a few parents
        if listable is None:
            listable = self._listable[parent] = self.allowed(Capability.LIST, parent,
                                                             is_prefix=True)
        return listable

    def read_ranges(self, prefix: str) -> list[tuple[str, bool]]:
        """Where under *prefix* this group can read anything (see PolicySet.read_ranges)."""
        return self.policies.policy_set.read_ranges(self.group, prefix)

    def recipients_for(self, path: str) -> Recipients:
        """The reader groups of *path* with their keys, and the escrow keys."""
        groups = tuple((g, self.policies.recipients_for(g))
                       for g in self.policies.policy_set.readers(path))
        return Recipients(path, groups, self.escrow, self.policies.writers_for(path))


class Scope(Protocol):
    """What a listing may enumerate and show (:mod:`vaultkey.proxy.listing`)."""

    def read_ranges(self, prefix: str) -> list[tuple[str, bool]]: ...

    def may_list_key(self, path: str) -> bool: ...


@dataclass(frozen=True)
class AdminScope:
    """The admin token's scope for the coverage report: the whole keyspace. (It reads
    envelope headers only; an admin token still gets no value from the data routes.)"""

    def read_ranges(self, prefix: str) -> list[tuple[str, bool]]:
        return [(prefix, False)]

    def may_list_key(self, path: str) -> bool:
        return True


def check_envelope(body: bytes, recipients: Recipients, now_us: int | None = None) -> Envelope:
    """Parse *body* and check it against the recipients of its path (from authz); with
    *now_us* (the clock, in microseconds since the epoch), also its counter."""
    env = Envelope.parse(body)
    if now_us is not None and env.counter > now_us + COUNTER_LEEWAY_US:
        raise MalformedEnvelope("the envelope's counter is more than a day ahead of the "
                                "proxy's clock (check the writer's clock)")
    if env.path != recipients.path:
        raise MalformedEnvelope(
            f"envelope is bound to {env.path!r}, not to the request path {recipients.path!r}"
        )
    present = set(env.recipient_kids)
    missing = [f"{group} ({', '.join(lacking)})" for group, keys in recipients.groups
               if (lacking := [k.key_id for k in keys if k.kid not in present])]
    if missing:
        raise MalformedEnvelope(
            "envelope is not encrypted for every group that may read this path; missing: "
            + "; ".join(missing)
        )
    foreign = sorted(format_key_id(kid) for kid in present - recipients.allowed_kids)
    if foreign:
        raise MalformedEnvelope(
            "envelope has stanzas for keys of no reader group: " + ", ".join(foreign)
        )
    if recipients.writers is not None and (problem := recipients.writers.problem(env)):
        raise SignatureRequired(f"{problem}; writers accepted here: "
                                + ", ".join(recipients.writers.names()))
    return env


__all__ = ["Authz", "Recipients", "check_envelope"]

"""Who can decrypt what: the policy's readers of a key against its envelope's stanzas.

The policy says which groups may read a path; the envelope header says which keys the
value was encrypted to. Both are public (no secret key is needed to read a header), so
the proxy compares them for every key and gives one verdict per key, worst first:

=========================  =====================================================  =======
verdict                    meaning                                                fix
=========================  =====================================================  =======
``foreign``                not a vaultkey envelope, or bound to another path      rewrite
``unknown-key``            a stanza (or the signer) is a key no policy names      rotate
``stale-recipient``        a stanza for a group that may no longer read the path,  rotate
                           or for a group's retired key
``unsigned-where-required`` unsigned, or signed by a writer the rule does not list rewrap
                           ``--sign-unverified`` with a listed writer's key
``missing-reader``         a reader group's current key has no stanza             rewrap
``ok``                     exactly the readers' current keys (and escrow keys)
=========================  =====================================================  =======

Pure: no I/O. ``KeyIndex.of(policies, escrow)`` is built once per request::

    index = KeyIndex.of(state.policies, state.escrow)
    row = assess(index, entry.path, entry.value)   # a JSON-ready dict (see docs/API.md)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vaultkey.envelope import Envelope
from vaultkey.errors import MalformedEnvelope
from vaultkey.keys import PublicKey, format_key_id, format_signing_key_id
from vaultkey.policy.engine import Capability
from vaultkey.policy.load import LoadedPolicies

VERDICTS = ("foreign", "unknown-key", "stale-recipient", "unsigned-where-required",
            "missing-reader", "ok")  # worst first
CAPABILITIES = (Capability.READ, Capability.LIST, Capability.WRITE, Capability.DELETE,
                Capability.WATCH)


@dataclass(frozen=True)
class KeyRole:
    group: str | None
    role: str  # current | old | escrow
    position: int | None


@dataclass(frozen=True)
class KeyIndex:
    """Every key id the policies name: recipients (current), retired keys (old), escrow
    keys, and writers' signing keys."""

    policies: LoadedPolicies
    roles: dict[bytes, KeyRole]
    signers: dict[bytes, str]

    @classmethod
    def of(cls, policies: LoadedPolicies, escrow: tuple[PublicKey, ...]) -> KeyIndex:
        roles: dict[bytes, KeyRole] = {}
        for key in escrow:
            roles.setdefault(key.kid, KeyRole(None, "escrow", None))
        for group, keys in policies.recipients.items():
            for i, key in enumerate(keys):
                roles.setdefault(key.kid, KeyRole(group, "current", i))
        for group, keys in policies.retired.items():
            for i, key in enumerate(keys):
                roles.setdefault(key.kid, KeyRole(group, "old", i))
        signers = {key.kid: name for named in policies.signers.values()
                   for name, key in named}
        return cls(policies, roles, signers)


def _prefix_of(path: str) -> str:
    return path.rsplit("/", 1)[0] + "/"


def fix_for(verdict: str, path: str) -> str | None:
    """The command that fixes *verdict* on the key *path* (for its whole parent prefix:
    both commands leave values that need nothing alone)."""
    prefix = _prefix_of(path)
    return {
        "missing-reader": f"vaultkey rewrap {prefix}",
        "stale-recipient": f"vaultkey rotate {prefix}",
        "unknown-key": f"vaultkey rotate {prefix}",
        "unsigned-where-required": "VAULTKEY_SIGNING_KEY=<a listed writer's .sigkey> "
                                   f"vaultkey rewrap {prefix} --sign-unverified",
        "foreign": f"vaultkey set {path} (write it again through vaultkey)",
    }.get(verdict)


def _problem(verdict: str, detail: str, path: str) -> dict[str, Any]:
    return {"verdict": verdict, "detail": detail, "fix": fix_for(verdict, path)}


def assess(index: KeyIndex, path: str, value: bytes) -> dict[str, Any]:
    """The coverage of one key: its stanzas and signer named, its readers, its problems
    and its verdict (the worst problem, else ``ok``)."""
    policy_set = index.policies.policy_set
    readers = policy_set.readers(path)
    row: dict[str, Any] = {"path": path, "size": len(value), "counter": None,
                           "stanzas": [], "signer": None, "readers": readers}
    try:
        env = Envelope.parse(value)
    except MalformedEnvelope as exc:
        return _verdict(row, [_problem("foreign", f"not a vaultkey envelope: {exc.message}",
                                       path)])
    if env.path != path:
        return _verdict(row, [_problem("foreign", f"an envelope bound to {env.path}, not to "
                                       "this path (copied here)", path)])
    row["counter"] = env.counter
    problems: list[dict[str, Any]] = []
    present = set(env.recipient_kids)
    for kid in env.recipient_kids:
        role = index.roles.get(kid)
        key_id = format_key_id(kid)
        row["stanzas"].append({"key_id": key_id, "group": role.group if role else None,
                               "role": role.role if role else "unknown",
                               "position": role.position if role else None})
        if role is None:
            problems.append(_problem("unknown-key", f"a stanza for {key_id}, a key no policy "
                                     "names", path))
        elif role.role == "old":
            problems.append(_problem("stale-recipient", f"a stanza for {key_id}, a retired key "
                                     f"of group {role.group}", path))
        elif role.role == "current" and role.group not in readers:
            problems.append(_problem("stale-recipient", f"a stanza for group {role.group} "
                                     f"({key_id}), which may not read this path", path))
    for group in readers:
        for i, key in enumerate(index.policies.recipients_for(group)):
            if key.kid not in present:
                problems.append(_problem("missing-reader", f"group {group} has no stanza for "
                                         f"its key {key.key_id} (keyring position {i})", path))
    problems += _signature_problems(index, path, env, row)
    return _verdict(row, problems)


def _signature_problems(index: KeyIndex, path: str, env: Envelope,
                        row: dict[str, Any]) -> list[dict[str, Any]]:
    problems = []
    signer_kid = env.signature.signer_kid if env.signature else None
    if signer_kid is not None:
        name = index.signers.get(signer_kid)
        row["signer"] = {"key_id": format_signing_key_id(signer_kid), "name": name}
        if name is None:
            problems.append(_problem("unknown-key", f"signed by {row['signer']['key_id']}, a "
                                     "key no policy lists as a writer", path))
    writers = index.policies.writers_for(path)
    if writers is not None:
        if signer_kid is None:
            problems.append(_problem("unsigned-where-required", "unsigned, and a policy rule "
                                     "requires a writer's signature here", path))
        elif signer_kid not in writers.keys:
            problems.append(_problem("unsigned-where-required", "signed by a writer the rule "
                                     "for this path does not list", path))
    return problems


def _verdict(row: dict[str, Any], problems: list[dict[str, Any]]) -> dict[str, Any]:
    row["problems"] = problems
    found = {p["verdict"] for p in problems}
    row["verdict"] = next((v for v in VERDICTS if v in found), "ok")
    return row


def access_row(index: KeyIndex, group: str, path: str, is_prefix: bool,
               rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One group's line of the "who can decrypt" matrix for a key or a prefix: each
    capability with the rule that decides it, and what the stanzas of *rows* (the
    coverage of the key, or of the keys under the prefix) let the group decrypt."""
    policy_set = index.policies.policy_set
    out: dict[str, Any] = {"group": group}
    for cap in CAPABILITIES:
        decision = policy_set.decide(group, path, cap, is_prefix=is_prefix)
        rule = decision.rule
        out[str(cap)] = {"allowed": decision.allowed,
                         "rule": rule.where if rule is not None else None}
    kids = {k.kid for k in index.policies.recipients_for(group)}
    ids = {format_key_id(k) for k in kids}
    decryptable = [r for r in rows if ids & {s["key_id"] for s in r["stanzas"]}]
    may_read = [r for r in rows if group in r["readers"]]
    if is_prefix:
        out["can_decrypt"] = None
        out["decrypt_count"] = [len(decryptable), len(rows)]
    else:
        out["can_decrypt"] = bool(decryptable)
        out["decrypt_count"] = None
    missing = [r for r in may_read if r not in decryptable or any(
        p["verdict"] == "missing-reader" and f"group {group} " in p["detail"]
        for p in r["problems"])]
    stale = [r for r in decryptable if group not in r["readers"]]
    out["mismatch"] = ("stale-recipient" if stale else "missing-reader" if missing else None)
    worst = stale or missing
    out["fix"] = fix_for(out["mismatch"], worst[0]["path"]) if worst else None
    return out


__all__ = ["CAPABILITIES", "VERDICTS", "KeyIndex", "access_row", "assess", "fix_for"]

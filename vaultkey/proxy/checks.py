"""Write-time checks on an envelope, before it is stored. Pure (no I/O, no keys).

A write is refused (422) unless the body is a well-formed v1 envelope bound to
the request path, carrying a stanza for every key of every group that may read
the path, and no stanza for a key outside those groups (escrow keys excepted).
"""

from __future__ import annotations

from collections.abc import Sequence

from vaultkey.envelope import Envelope
from vaultkey.errors import MalformedEnvelope
from vaultkey.keys import PublicKey, format_key_id
from vaultkey.policy.load import LoadedPolicies


def check_envelope(
    body: bytes, path: str, policies: LoadedPolicies, escrow: Sequence[PublicKey]
) -> Envelope:
    env = Envelope.parse(body)
    if env.signature is not None:
        # Why: nothing verifies writer signatures yet; storing one would suggest it had been.
        raise MalformedEnvelope("signed envelopes are not supported yet by this proxy")
    if env.path != path:
        raise MalformedEnvelope(
            f"envelope is bound to {env.path!r}, not to the request path {path!r}"
        )
    present = set(env.recipient_kids)
    allowed = {k.kid for k in escrow}
    missing = []
    for group in policies.policy_set.readers(path):
        keys = policies.recipients_for(group)
        allowed.update(k.kid for k in keys)
        lacking = [k.key_id for k in keys if k.kid not in present]
        if lacking:
            missing.append(f"{group} ({', '.join(lacking)})")
    if missing:
        raise MalformedEnvelope(
            "envelope is not encrypted for every group that may read this path; missing: "
            + "; ".join(missing)
        )
    foreign = sorted(format_key_id(kid) for kid in present - allowed)
    if foreign:
        raise MalformedEnvelope(
            "envelope has stanzas for keys of no reader group: " + ", ".join(foreign)
        )
    return env

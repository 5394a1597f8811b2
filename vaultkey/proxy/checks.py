"""Write-time checks on an envelope, before it is stored. Pure (no I/O, no keys).

A write is refused (422) unless the body is a well-formed v1 envelope bound to
the request path, carrying a stanza for every key of every group that may read
the path, and no stanza for a key outside those groups (escrow keys excepted).
"""

from __future__ import annotations

from vaultkey.envelope import Envelope
from vaultkey.errors import MalformedEnvelope
from vaultkey.keys import format_key_id
from vaultkey.proxy.authz import Recipients


def check_envelope(body: bytes, recipients: Recipients) -> Envelope:
    """Parse *body* and check it against the recipients of its path (from authz)."""
    env = Envelope.parse(body)
    if env.signature is not None:
        # Why: nothing verifies writer signatures yet; storing one would suggest it had been.
        raise MalformedEnvelope("signed envelopes are not supported yet by this proxy")
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
    return env

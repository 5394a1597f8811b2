"""TTL leases owned by groups: granted on a write, kept alive, revoked.

etcd's lease ids are small integers that anyone could guess, so ownership is
what protects them: each lease the proxy grants is recorded under
``<root>/sys/leases/<id>`` (attached to the lease itself, so the record goes
when the lease does) with the group that asked for it. A group can keep alive,
revoke or attach only its own leases; for any other id, existing or not, the
answer is the same 404, so ids cannot be probed::

    lease = await leases.grant(state, "alpha", 30)
    await leases.require_owner(state, "alpha", lease)     # or NotFound
"""

from __future__ import annotations

import json
import re

from vaultkey.errors import NotFound, UsageError
from vaultkey.proxy.state import ProxyState

MIN_TTL = 2  # etcd's minimum (1.5 x the election timeout); shorter ones are raised silently
MAX_TTL = 24 * 3600
_ID_RE = re.compile(r"[0-9a-f]{16}")


def lease_text(lease: int) -> str:
    return f"{lease:016x}"


def parse_lease(text: str) -> int:
    if not _ID_RE.fullmatch(text):
        raise NotFound("no such lease")
    return int(text, 16)


def check_ttl(seconds: int) -> int:
    # Why refuse rather than round: etcd raises a short TTL without saying so, and a
    # registration that outlives its owner by surprise is a service-discovery bug.
    if not MIN_TTL <= seconds <= MAX_TTL:
        raise UsageError(f"a TTL must be between {MIN_TTL} s and {MAX_TTL // 3600} h")
    return seconds


async def grant(state: ProxyState, group: str, ttl: int) -> int:
    lease = await state.kv.grant_lease(check_ttl(ttl))
    record = json.dumps({"group": group, "ttl": ttl}).encode()
    await state.sys.put(f"/leases/{lease_text(lease)}", record, lease=lease)
    return lease


async def require_owner(state: ProxyState, group: str, lease: int) -> None:
    entry = await state.sys.get(f"/leases/{lease_text(lease)}")
    try:
        owner = json.loads(entry.value).get("group") if entry else None
    except ValueError:
        owner = None
    if owner != group:  # another group's lease answers exactly like a missing one
        raise NotFound(f"no lease {lease_text(lease)}")

"""The token registry on the memory store: races, newer records, expiry, made-up ids."""

from __future__ import annotations

import asyncio
import json

import pytest

from vaultkey.errors import Unauthenticated
from vaultkey.proxy.store.memory import MemoryKV
from vaultkey.proxy.tokens import TokenRecord, TokenRegistry

ADMIN = "kJ8vQ2xN5rT0wY7bL4mF1sD9gH6cP3aE_u-Zo2Q"


class PausableKV(MemoryKV):
    """A memory store whose next record read, once ``proceed`` is cleared, is held at the
    point of reading (other reads, e.g. the revocation's own, go through)."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Event()
        self.proceed = asyncio.Event()
        self.proceed.set()

    async def get(self, path: str):  # type: ignore[no-untyped-def]
        found = await super().get(path)
        if self.proceed.is_set() or self.reading.is_set():
            return found
        self.reading.set()
        await self.proceed.wait()
        return found


def test_a_lookup_racing_a_revocation_does_not_revive_the_token():
    async def scenario() -> None:
        store = PausableKV()
        registry = TokenRegistry(store, ADMIN)
        token, record = await registry.create("g")
        store.proceed.clear()
        lookup = asyncio.ensure_future(registry.authenticate(token))
        await store.reading.wait()  # the lookup has read the record...
        await registry.revoke(record.id)  # ...and the token is revoked before it caches it
        store.proceed.set()
        with pytest.raises(Unauthenticated):
            await lookup  # the racing lookup was refused too
        with pytest.raises(Unauthenticated):
            await registry.authenticate(token)

    asyncio.run(scenario())


def test_token_records_from_newer_replicas_are_read_and_bad_ones_skipped():
    async def scenario() -> None:
        store = MemoryKV()
        registry = TokenRegistry(store, ADMIN)
        token, record = await registry.create("g", name="n")
        entry = await store.get(f"/tokens/{record.id}")
        assert entry is not None
        raw = json.loads(entry.value)
        raw["added_by_a_newer_version"] = True
        await store.put(f"/tokens/{record.id}", json.dumps(raw).encode())
        await store.put("/tokens/0000000000000000", b"not json")
        assert (await registry.authenticate(token)).group == "g"
        assert [r.id for r in await registry.list()] == [record.id]
        assert TokenRecord.from_json(json.dumps(raw).encode()).name == "n"

    asyncio.run(scenario())


def test_expiry_follows_the_injected_clock_without_sleeping():
    now = [1000.0]

    async def scenario() -> None:
        registry = TokenRegistry(MemoryKV(), ADMIN, clock=lambda: now[0])
        token, _record = await registry.create("g", ttl=60)
        assert (await registry.authenticate(token)).group == "g"
        now[0] += 60
        with pytest.raises(Unauthenticated, match="expired"):
            await registry.authenticate(token)

    asyncio.run(scenario())


def test_made_up_token_ids_cost_one_store_read_per_refresh_not_one_each():
    async def scenario() -> int:
        store = MemoryKV()
        registry = TokenRegistry(store, ADMIN)
        await registry.create("g")
        for i in range(200):
            with pytest.raises(Unauthenticated):
                await registry.authenticate(f"vkt_{i:016x}.{'A' * 43}")
        return registry.etcd_lookups

    assert asyncio.run(scenario()) == 1  # the known-id list, read once


def test_a_token_created_through_this_replica_is_known_at_once():
    async def scenario() -> None:
        registry = TokenRegistry(MemoryKV(), ADMIN)
        with pytest.raises(Unauthenticated):
            await registry.authenticate(f"vkt_{0:016x}.{'A' * 43}")  # the id list is fresh
        token, _ = await registry.create("g")
        assert (await registry.authenticate(token)).group == "g"

    asyncio.run(scenario())


def test_several_admin_tokens_are_accepted_each_with_its_own_id_and_can_be_replaced():
    from vaultkey.proxy.config import admin_tokens

    new = "Vn3qP8sL1xW6tY0bR4mK9dF2gH7cJ5aZ_e-Qo8U"
    registry = TokenRegistry(MemoryKV(), f"# rotation: old first\n{ADMIN}\n\n{new}\n")
    old_caller, new_caller = registry.check_cached(ADMIN), registry.check_cached(new)
    assert old_caller is not None and new_caller is not None
    assert old_caller.kind == new_caller.kind == "admin"
    assert old_caller.token_id != new_caller.token_id  # the audit log tells them apart
    registry.set_admin_tokens(admin_tokens(new))  # the old one retired
    with pytest.raises(Unauthenticated):
        asyncio.run(registry.authenticate(ADMIN))
    assert registry.check_cached(new) == new_caller


@pytest.mark.parametrize(("text", "message"), [
    ("", "no admin token"), ("# only a comment\n", "no admin token"),
    (f"{ADMIN}\n{'a' * 40}\n", "too little entropy"), (f"{ADMIN}\nshort\n", "at least 32"),
])
def test_an_admin_token_file_with_a_weak_or_no_token_is_refused(text, message):
    from vaultkey.errors import UsageError
    from vaultkey.proxy.config import admin_tokens

    with pytest.raises(UsageError, match=message):
        admin_tokens(text)

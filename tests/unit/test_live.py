"""Live configuration without a network: the snapshot and its updates (pure), then
Live/AsyncLive over an httpx MockTransport that plays a proxy: a listing, and a watch
stream the test feeds event by event."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from types import MappingProxyType

import httpx
import pytest

import vaultkey
from tests._helpers.wait import wait_until
from vaultkey.client import AsyncClient, Client
from vaultkey.client._live import Change, _View, changed
from vaultkey.client._watch import WatchEvent
from vaultkey.crypto import SecretKey, encrypt

KEY = SecretKey.generate()
STRANGER = SecretKey.generate()
SECRET = b"SECRET-VALUE-never-shown"


def loaded(revision: int, values: dict[str, bytes], failed=None):
    return revision, dict(values), dict(failed or {})


def put(path: str, value: bytes, revision: int) -> WatchEvent:
    return WatchEvent("put", path, revision, value=value)


def delete(path: str, revision: int) -> WatchEvent:
    return WatchEvent("delete", path, revision)


def view(**kw) -> _View:
    v = _View(None, "/app/", **kw)  # no client: only the follower would use it
    v._loaded(loaded(10, {"/app/a": b"A", "/app/b": b"B"}), initial=True)
    return v


# -- the pure parts ---------------------------------------------------------------------

def test_changed_finds_added_replaced_and_removed_keys_but_not_rewrites():
    old = {"/a": b"1", "/b": b"2", "/c": b"3"}
    new = {"/a": b"1", "/b": b"20", "/d": b"4"}
    assert changed(old, new) == {"/b", "/c", "/d"}
    assert changed(old, new, ["/a", "/b"]) == {"/b"}  # only where the batch touched
    assert changed(old, dict(old)) == frozenset()


def test_a_change_and_a_view_never_show_a_value_in_their_repr():
    v = view(defaults={"/app/pw": SECRET})
    change = Change(frozenset({"/app/pw"}), 7, {"/app/pw": SECRET}, {"/app/pw": SECRET + b"2"})
    for text in (repr(v), str(v), repr(change)):
        assert b"SECRET" not in text.encode() and "SECRET" not in text
    assert repr(v) == "<_View /app/ revision=10 keys=3 running>"
    assert "paths=frozenset({'/app/pw'})" in repr(change) and "revision=7" in repr(change)


def test_defaults_are_checked_where_they_are_given():
    with pytest.raises(vaultkey.UsageError, match="not under /app/"):
        _View(None, "/app/", defaults={"/other/x": b"1"})
    with pytest.raises(vaultkey.UsageError, match="must be bytes"):
        _View(None, "/app/", defaults={"/app/x": "text"})
    with pytest.raises(vaultkey.InvalidPath):
        _View(None, "/app/", defaults={"/app/../x": b"1"})


def test_a_stored_value_shadows_its_default_and_a_delete_falls_back_to_it():
    seen: list[Change] = []
    v = view(defaults={"/app/a": b"default-a", "/app/c": b"default-c"}, on_change=seen.append)
    assert dict(v) == {"/app/a": b"A", "/app/b": b"B", "/app/c": b"default-c"}
    assert seen == []  # the first load is no change
    v._take(delete("/app/a", 11), 11)
    v._take(delete("/app/b", 12), 12)
    assert dict(v) == {"/app/a": b"default-a", "/app/c": b"default-c"}  # b is gone
    assert [(c.paths, c.revision, c.old.get("/app/b"), c.new.get("/app/a")) for c in seen] == [
        ({"/app/a"}, 11, b"B", b"default-a"), ({"/app/b"}, 12, b"B", b"default-a")]
    v._take(put("/app/c", b"stored-c", 13), 13)
    assert v["/app/c"] == b"stored-c" and v.revision == 13


def test_the_events_of_one_revision_are_applied_together_and_snapshots_never_change():
    seen: list[Change] = []
    v = view(on_change=seen.append)
    before = v.snapshot()
    v._take(put("/app/a", b"A2", 11), None)  # the revision's end is not marked yet
    v._take(delete("/app/b", 11), None)
    assert dict(v) == {"/app/a": b"A", "/app/b": b"B"} and v.revision == 10 and seen == []
    v._take(put("/app/c", b"C", 11), 11)  # the event that carried the id
    assert dict(v) == {"/app/a": b"A2", "/app/c": b"C"} and v.revision == 11
    [change] = seen
    assert change.paths == {"/app/a", "/app/b", "/app/c"} and change.revision == 11
    assert dict(change.old) == {"/app/a": b"A", "/app/b": b"B"} and change.new == dict(v)
    assert dict(before) == {"/app/a": b"A", "/app/b": b"B"}  # a snapshot taken earlier
    assert isinstance(before, MappingProxyType)
    with pytest.raises(TypeError):
        before["/app/a"] = b"x"  # type: ignore[index]
    v._take(put("/app/a", b"A2", 12), 12)  # written again, unchanged: no change
    assert len(seen) == 1 and v.revision == 12


def test_a_value_that_does_not_decrypt_keeps_the_previous_one_and_is_reported(caplog):
    v = view()
    bad = WatchEvent("put", "/app/a", 11, error=vaultkey.DecryptionError("no stanza for you"))
    with caplog.at_level(logging.WARNING, logger="vaultkey.client._live"):
        v._take(bad, 11)
    assert v["/app/a"] == b"A" and v.revision == 11
    assert v.errors == 1 and isinstance(v.error, vaultkey.DecryptionError) and v.running
    assert "/app/a does not decrypt (no stanza for you)" in caplog.text


def test_a_resync_asks_for_a_reload_that_events_before_it_then_cannot_undo():
    seen: list[Change] = []
    v = view(on_change=seen.append)
    v._take(put("/app/a", b"A2", 11), None)  # cut before its revision was complete
    assert v._take(WatchEvent("resync", "/app/", 20, reason="compacted"), 20) is True
    v._loaded(loaded(25, {"/app/a": b"A3", "/app/new": b"N"}), initial=False)
    assert dict(v) == {"/app/a": b"A3", "/app/new": b"N"} and v.revision == 25
    assert seen[-1].paths == {"/app/a", "/app/b", "/app/new"} and seen[-1].revision == 25
    v._take(put("/app/a", b"older", 24), 24)  # replayed from before the reload: skipped
    assert v["/app/a"] == b"A3" and v._batch == []


def test_a_reload_keeps_the_value_that_no_longer_decrypts_but_the_first_load_raises():
    v = view()
    broken = vaultkey.DecryptionError("/app/a: tampered")
    v._loaded(loaded(30, {"/app/b": b"B2"}, {"/app/a": broken}), initial=False)
    assert dict(v) == {"/app/a": b"A", "/app/b": b"B2"} and v.error is broken
    fresh = _View(None, "/app/")
    with pytest.raises(vaultkey.DecryptionError, match="tampered"):
        fresh._loaded(loaded(30, {}, {"/app/a": broken}), initial=True)


def test_an_on_change_callback_that_raises_is_logged_and_the_update_stands(caplog):
    def boom(change: Change) -> None:
        raise RuntimeError("callback bug")

    v = view(on_change=boom)
    with caplog.at_level(logging.ERROR, logger="vaultkey.client._live"):
        v._take(put("/app/a", b"A2", 11), 11)
    assert v["/app/a"] == b"A2" and "the on_change callback failed" in caplog.text


# -- Live and AsyncLive over a canned proxy ---------------------------------------------

END = b""  # put in the stream queue: the proxy ends the stream (the client reconnects)
_counter = itertools.count(1)


def sse(event: str, data: dict[str, object], rev: int | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {rev}\n" if rev is not None else "")
    return (head + f"data: {json.dumps(data)}\n\n").encode()


def entry(path: str, value: bytes, rev: int, key: SecretKey = KEY) -> dict[str, object]:
    blob = encrypt(value, path, [key.public], counter=next(_counter))
    return {"path": path, "revision": rev, "create_revision": rev, "version": 1,
            "lease": None, "envelope": base64.b64encode(blob).decode()}


class FakeProxy:
    """The listing of /app/ (``values`` at ``revision``) and a watch stream whose chunks
    come from ``chunks``, which tests feed from their own thread."""

    def __init__(self, values: dict[str, bytes], revision: int) -> None:
        self.values, self.revision = values, revision
        self.chunks: queue.Queue[bytes] = queue.Queue()
        self.loads = 0
        self.since: list[str | None] = []

    def send(self, event: str, path: str, value: bytes | None, rev: int,
             last: bool = True, key: SecretKey = KEY) -> None:
        data = entry(path, value, rev, key) if value is not None else {"path": path,
                                                                       "revision": rev}
        self.chunks.put(sse(event, {"type": event, **data}, rev if last else None))

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer t"
        if request.url.path == "/v1/kv/app/":
            self.loads += 1
            return httpx.Response(200, json={"prefix": "/app/", "revision": self.revision,
                                             "entries": [entry(p, v, self.revision)
                                                         for p, v in self.values.items()]})
        assert request.url.path == "/v1/watch/app/"
        self.since.append(request.url.params.get("since"))
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=self._stream())

    async def _stream(self) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = self.chunks.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.002)
                continue
            if chunk == END:
                return
            yield chunk


@pytest.fixture
def fake() -> FakeProxy:
    return FakeProxy({"/app/a": b"A", "/app/b": b"B"}, 10)


def client(fake: FakeProxy) -> Client:
    return Client("https://vk.test", "t", key=KEY, transport=httpx.MockTransport(fake.handle))


def change_after(cfg, action) -> Change | None:
    """wait_for_change() around *action*: a change applied before the wait began would
    not be reported, so the wait is registered first."""
    result: list[Change | None] = []
    waiter = threading.Thread(target=lambda: result.append(cfg.wait_for_change(timeout=10)))
    waiter.start()
    assert wait_until(lambda: cfg._waiters)
    action()
    waiter.join(15)
    return result[0]


def test_live_follows_the_stream_in_its_thread_and_stops_at_once(fake):
    threads: list[str] = []
    with client(fake) as vk:
        cfg = vk.live("/app/", defaults={"/app/c": b"default"},
                      on_change=lambda c: threads.append(threading.current_thread().name))
        assert dict(cfg) == {"/app/a": b"A", "/app/b": b"B", "/app/c": b"default"}
        assert cfg.revision == 10 and fake.loads == 1
        def two_keys_at_one_revision() -> None:
            fake.send("put", "/app/a", b"A2", 11, last=False)
            fake.send("put", "/app/c", b"C", 11)

        change = change_after(cfg, two_keys_at_one_revision)
        assert change is not None and change.paths == {"/app/a", "/app/c"}
        assert (change.revision, change.new["/app/c"], change.old["/app/c"]) == (
            11, b"C", b"default")
        assert threads == ["vaultkey-live /app/"]
        assert fake.since == ["10"]  # resumed from the load's revision: nothing missed
        assert cfg.wait_for_change(timeout=0.05) is None
        started = time.monotonic()
        cfg.stop()
        assert time.monotonic() - started < 2 and not cfg._thread.is_alive()
        assert cfg.wait_for_change(timeout=10) is None and not cfg.running
        assert repr(cfg) == "<Live /app/ revision=11 keys=3 stopped>"


def test_stop_from_the_callback_ends_the_thread_without_waiting_for_itself(fake):
    with client(fake) as vk:
        cfg = vk.live("/app/", on_change=lambda change: cfg.stop())
        fake.send("put", "/app/a", b"A2", 11)
        assert wait_until(lambda: not cfg._thread.is_alive(), timeout=10)
        assert cfg["/app/a"] == b"A2" and not cfg.running


def test_live_reloads_the_whole_prefix_after_a_resync(fake):
    with client(fake) as vk, vk.live("/app/") as cfg:
        fake.values, fake.revision = {"/app/b": b"B2", "/app/z": b"Z"}, 40
        change = change_after(cfg, lambda: fake.chunks.put(sse(
            "resync", {"type": "resync", "reason": "compacted", "revision": 35})))
        assert change is not None and change.paths == {"/app/a", "/app/b", "/app/z"}
        assert dict(cfg) == {"/app/b": b"B2", "/app/z": b"Z"} and cfg.revision == 40
        assert fake.loads == 2
        assert change_after(cfg, lambda: fake.send("put", "/app/z", b"Z2", 41)) is not None
        assert cfg["/app/z"] == b"Z2"
        assert fake.since == ["10", "35"]


def test_an_event_that_does_not_decrypt_is_counted_and_the_watch_goes_on(fake):
    with client(fake) as vk, vk.live("/app/") as cfg:
        fake.send("put", "/app/a", b"for someone else", 11, key=STRANGER)
        assert wait_until(lambda: cfg.revision == 11)
        assert change_after(cfg, lambda: fake.send("put", "/app/b", b"B2", 12)) is not None
        assert dict(cfg) == {"/app/a": b"A", "/app/b": b"B2"}
        assert cfg.errors == 1 and isinstance(cfg.error, vaultkey.DecryptionError)


def test_a_revoked_token_ends_the_view_and_wait_for_change_raises_it(fake):
    with client(fake) as vk, vk.live("/app/") as cfg:
        fake.chunks.put(sse("revoked", {}))
        with pytest.raises(vaultkey.Unauthenticated, match="revoked"):
            cfg.wait_for_change(timeout=10)
        assert not cfg.running and isinstance(cfg.error, vaultkey.Unauthenticated)
        assert repr(cfg).endswith("failed: Unauthenticated>")
        assert cfg["/app/a"] == b"A"  # the last snapshot is still there to read


def test_async_live_follows_the_stream_in_a_task(fake):
    async def run() -> tuple[Change | None, dict[str, bytes], str]:
        transport = httpx.MockTransport(fake.handle)
        async with AsyncClient("https://vk.test", "t", key=KEY, transport=transport) as vk:
            cfg = await vk.live("/app/", defaults={"/app/c": b"default"})
            async with cfg:
                assert await cfg.wait_for_change(timeout=0.05) is None
                waiting = asyncio.create_task(cfg.wait_for_change(timeout=10))
                await asyncio.sleep(0)  # registered: a change before the call is not reported
                fake.send("delete", "/app/a", None, 11)
                change = await waiting
            return change, dict(cfg), repr(cfg)

    change, values, text = asyncio.run(asyncio.wait_for(run(), 30))
    assert change is not None and change.paths == {"/app/a"} and change.revision == 11
    assert values == {"/app/b": b"B", "/app/c": b"default"}
    assert text == "<AsyncLive /app/ revision=11 keys=2 stopped>"


def test_items_and_values_come_from_one_snapshot_even_if_it_is_swapped_meanwhile():
    v = view()
    items = iter(v.items())
    first = next(items)
    v._take(delete("/app/b", 11), 11)  # the batch lands between two steps of a loop
    v._take(put("/app/a", b"A2", 12), 12)
    assert [first, *items] == [("/app/a", b"A"), ("/app/b", b"B")]  # not a KeyError
    values = iter(v.values())
    assert next(values) == b"A2" and list(values) == []
    assert v == {"/app/a": b"A2"} and v.keys() == {"/app/a"}

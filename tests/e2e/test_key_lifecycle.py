"""Issue 11's acceptance, against the real etcd and the real TLS proxy: the rotation story
(new key, rewrap, old key removed, a concurrent write kept), rotate, forged and unsigned
values planted directly in etcd, and rollbacks seen by the SDK and by the CLI."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from tests._helpers.wait import wait_until
from tests.e2e.conftest import POLICIES
from tests.e2e.test_cli import ok, vk
from vaultkey.client import Client
from vaultkey.crypto import SecretKey, encrypt
from vaultkey.envelope import Envelope
from vaultkey.errors import DecryptionError, RollbackDetected, SignatureError
from vaultkey.signkey import SigningKey, write_keypair


def _client(proxy, group: str, **kw) -> Client:
    kw.setdefault("key", proxy.key_path(group))
    kw.setdefault("trust", proxy.trust_dir())
    return Client(proxy.addr, proxy.tokens[group], cacert=str(proxy.ca_path), **kw)


def _envelope(proxy, path: str) -> Envelope:
    entry = proxy.store().get(path)
    assert entry is not None
    return Envelope.parse(entry.value)


def _reload(proxy, text: str, expect_kids: set[str]) -> None:
    """Rewrite alpha.toml, SIGHUP, and wait until the proxy names exactly *expect_kids*."""
    (proxy.policy_dir / "alpha.toml").write_text(text)
    proxy.proc.send_signal(signal.SIGHUP)
    with _client(proxy, "alpha") as c:
        assert wait_until(lambda: {k.key_id for k in c.recipients("/alpha/rot/x")}
                          == expect_kids), "policy reload did not take effect"


@pytest.fixture(scope="module")
def lifecycle(proxy_factory):
    p = proxy_factory()
    p.tokens = {g: p.create_token(g, name=f"{g}-lifecycle") for g in ("alpha", "beta")}
    return p


def test_rotation_story_new_key_rewrap_old_key_removed_concurrent_write_kept(lifecycle,
                                                                            tmp_path):
    proxy = lifecycle
    old = proxy.keys["alpha"]
    paths = [f"/alpha/rot/k{i:02d}" for i in range(12)]
    with _client(proxy, "alpha") as c:
        for i, path in enumerate(paths):
            c.set(path, f"value {i}".encode())
    before = {p: _envelope(proxy, p) for p in paths}

    # 1. the group adds a new key: keygen, a policy edit, SIGHUP; readers trust it
    new_key_path, new_pub = write_keypair(proxy.policy_dir / "alpha-new")
    new = SecretKey.load(new_key_path)
    shutil.copy(new_pub, proxy.trust_dir() / "alpha-new.pub")
    both = POLICIES["alpha.toml"].replace('recipients = ["alpha.pub"]',
                                          'recipients = ["alpha.pub", "alpha-new.pub"]')
    _reload(proxy, both, {old.key_id, new.key_id})
    dry = json.loads(ok(vk(proxy, "alpha", "rewrap", "/alpha/rot/", "--dry-run", "-o", "json")))
    assert {v["action"] for v in dry["values"]} == {"would-rewrap"}
    assert all(v["detail"] == f"+{new.key_id}" for v in dry["values"])
    assert _envelope(proxy, paths[0]) == before[paths[0]]  # a dry run writes nothing

    # ... and rewraps its prefix, while another writer changes two values: one the rewrap
    # has already done, one it has listed but not reached (its compare-and-swap must lose)
    concurrent = {paths[1]: b"written during the rewrap (done)",
                  paths[9]: b"written during the rewrap (pending)"}
    with _client(proxy, "alpha") as writer, _client(proxy, "alpha") as rewrapper:
        def progress(done: int, total: int, path: str, start: int) -> None:
            if done == 5:
                for p, value in concurrent.items():
                    writer.set(p, value)

        report = rewrapper.rewrap("/alpha/rot/", progress=progress)
    actions = {o.path: o.action for o in report.outcomes}
    # its swap lost: read again, it was already wrapped to both keys (the proxy held the
    # concurrent write to the policy of the moment), so it is left as its writer wrote it
    assert actions[paths[9]] == "current"
    assert sum(a == "rewrapped" for a in actions.values()) == len(paths) - 1
    for p in paths:
        env = _envelope(proxy, p)
        assert set(env.recipient_kids) == {old.public.kid, new.public.kid}
        if p not in concurrent:  # rewrap keeps the data key: the same key commitment
            assert env.commitment == before[p].commitment
            assert env.counter > before[p].counter

    # 2. it removes the old key, and rewraps again with the new key alone
    _reload(proxy, POLICIES["alpha.toml"].replace('recipients = ["alpha.pub"]',
                                                  'recipients = ["alpha-new.pub"]'),
            {new.key_id})
    out = ok(vk(proxy, "alpha", "rewrap", "/alpha/rot/", VAULTKEY_KEY=str(new_key_path)))
    assert f"{len(paths)} rewrapped" in out.decode()

    # 3. the old secret key opens none of the current values; the new key opens all
    with _client(proxy, "alpha", key=old) as c:
        for p in paths:
            with pytest.raises(DecryptionError, match="no stanza for key"):
                c.get(p)
    with _client(proxy, "alpha", key=new) as c:
        values = c.get_many("/alpha/rot/")
    # 4. the concurrent writes were not lost
    for i, p in enumerate(paths):
        assert values[p] == concurrent.get(p, f"value {i}".encode())
    again = json.loads(ok(vk(proxy, "alpha", "rewrap", "/alpha/rot/", "-o", "json",
                             VAULTKEY_KEY=str(new_key_path))))
    assert {v["action"] for v in again["values"]} == {"current"}  # a rerun has nothing to do
    _reload(proxy, POLICIES["alpha.toml"], {old.key_id})


def _seed(proxy, prefix: str, count: int, value: bytes) -> list[str]:
    paths = [f"{prefix}k{i:02d}" for i in range(count)]
    with _client(proxy, "alpha") as c:
        for p in paths:
            c.set(p, value)
    return paths


def test_a_writer_racing_the_cli_rewrap_never_loses_a_write(lifecycle):
    proxy = lifecycle
    paths = _seed(proxy, "/alpha/race/", 30, b"initial")
    last: dict[str, bytes] = {}
    stop = threading.Event()

    def write() -> None:
        with _client(proxy, "alpha") as w:
            n = 0
            while not stop.is_set():
                p = paths[n % len(paths)]
                value = f"racing write {n}".encode()
                w.set(p, value)  # acknowledged: this value must survive
                last[p] = value
                n += 1

    racer = threading.Thread(target=write)
    racer.start()
    try:
        for _ in range(2):
            ok(vk(proxy, "alpha", "rewrap", "/alpha/race/"))
            ok(vk(proxy, "alpha", "rotate", "/alpha/race/"))
    finally:
        stop.set()
        racer.join()
    assert last, "the racing writer wrote nothing"
    with _client(proxy, "alpha") as c:
        values = c.get_many("/alpha/race/")
    for p in paths:
        assert values[p] == last.get(p, b"initial")
    print(f"\n{len(last)} keys written concurrently with 2 rewraps and 2 rotations; none lost")


def test_rotate_changes_every_data_key(lifecycle):
    proxy = lifecycle
    paths = _seed(proxy, "/alpha/rotate/", 8, b"same plaintext")
    before = {p: _envelope(proxy, p) for p in paths}
    run = vk(proxy, "alpha", "rotate", "/alpha/rotate/")
    out, err = ok(run).decode(), run.stderr.decode()
    assert f"{len(paths)} rotated" in out
    assert "etcdctl compact" in err and "change any secret" in err
    for p in paths:
        after = _envelope(proxy, p)
        # a new data key: a new key commitment, new wrapped keys, a new ciphertext
        assert after.commitment != before[p].commitment
        assert after.stanzas[0].wrapped != before[p].stanzas[0].wrapped
        assert after.ciphertext != before[p].ciphertext
        assert after.counter > before[p].counter
    with _client(proxy, "alpha") as c:
        assert set(c.get_many("/alpha/rotate/").values()) == {b"same plaintext"}


SIGNED_POLICY = POLICIES["alpha.toml"] + """
[[rules]]
prefix = "/alpha/signed/"
require_signature = ["group:alpha"]
"""


@pytest.fixture(scope="module")
def signed(proxy_factory, tmp_path_factory):
    """A proxy whose policy requires alpha's writer signature under /alpha/signed/, and a
    reader trust store that requires the same."""
    d = tmp_path_factory.mktemp("signers")
    made = subprocess.run([sys.executable, "-m", "vaultkey", "keygen", "--sign",
                           str(d / "release")], capture_output=True, check=True, timeout=60)
    release_key, release_pub = d / "release.sigkey", d / "release.sigpub"
    release = SigningKey.load(release_key)
    assert made.stdout.decode().strip() == f"signing key id: {release.key_id}"
    assert release_key.stat().st_mode & 0o777 == 0o600
    policy = SIGNED_POLICY.replace('recipients = ["alpha.pub"]',
                                   f'recipients = ["alpha.pub"]\nsigners = '
                                   f'["{release.public.to_text()}"]')
    proxy = proxy_factory({**POLICIES, "alpha.toml": policy})
    proxy.tokens = {g: proxy.create_token(g, name=f"{g}-signed") for g in ("alpha", "beta")}
    trust = proxy.trust_dir()
    shutil.copy(release_pub, trust / "release.sigpub")
    (trust / "signatures.trust").write_text("require-signature /alpha/signed/ release\n")
    mallory = SigningKey.generate()
    return proxy, release_key, release, mallory


def test_signed_writes_are_verified_by_readers_and_shown_by_get(signed):
    proxy, release_key, release, _mallory = signed
    with _client(proxy, "alpha", signing_key=str(release_key)) as c:
        c.set("/alpha/signed/db", b"postgres://db")
        item = c.read("/alpha/signed/db")
    assert item.value == b"postgres://db"
    assert item.signer is not None and item.signer.name == "release" and item.signer.verified
    shown = json.loads(ok(vk(proxy, "alpha", "get", "/alpha/signed/db", "-o", "json")))
    assert shown["signer"] == {"key_id": release.key_id, "name": "release", "verified": True}
    assert shown["counter"] == item.counter > 0
    # outside the signed prefix a signature is optional, and still shown and verified
    with _client(proxy, "alpha", signing_key=str(release_key)) as c:
        c.set("/alpha/plain/x", b"v")
    shown = json.loads(ok(vk(proxy, "alpha", "get", "/alpha/plain/x", "-o", "json")))
    assert shown["signer"]["name"] == "release" and shown["signer"]["verified"] is True


def test_the_proxy_refuses_unsigned_and_wrongly_signed_writes_with_422(signed):
    proxy, _release_key, _release, mallory = signed
    path = "/alpha/signed/forged"
    with proxy.client(proxy.tokens["alpha"]) as c:
        unsigned = proxy.envelope(path, b"v")
        r = c.put(f"/v1/kv{path}", content=unsigned)
        assert r.status_code == 422 and r.json()["error"]["code"] == "signature_required"
        assert "not signed" in r.json()["error"]["message"]
        wrong = encrypt(b"v", path, [proxy.keys["alpha"].public], signer=mallory)
        r = c.put(f"/v1/kv{path}", content=wrong)
        assert r.status_code == 422 and mallory.key_id in r.json()["error"]["message"]
    with _client(proxy, "alpha") as c, pytest.raises(Exception, match="requires a writer "
                                                     "signature"):
        c.set(path, b"v")  # no signing key: refused before anything is sent


def test_values_planted_directly_in_etcd_are_refused_by_sdk_and_cli(signed):
    proxy, _release_key, release, mallory = signed
    alpha = [proxy.keys["alpha"].public]
    store = proxy.store()
    genuine = encrypt(b"genuine", "/alpha/signed/other", alpha, signer=release, counter=1)
    forged_by_mallory = encrypt(b"evil", "/alpha/signed/a", alpha, signer=mallory, counter=1)
    # mallory's envelope with release's signature block from another path's envelope
    stolen = Envelope.parse(genuine).signature
    spliced = Envelope.parse(forged_by_mallory)
    spliced = Envelope(spliced.path, spliced.counter, spliced.stanzas, spliced.commitment,
                       spliced.nonce, spliced.ciphertext, stolen).serialize()
    planted = {
        "/alpha/signed/untrusted": (encrypt(b"evil", "/alpha/signed/untrusted", alpha,
                                            signer=mallory), "not a trusted writer"),
        "/alpha/signed/unsigned": (encrypt(b"evil", "/alpha/signed/unsigned", alpha),
                                   "not signed"),
        "/alpha/signed/a": (spliced, "does not verify"),
        "/alpha/signed/moved": (genuine, "bound to another path"),
    }
    for path, (blob, _why) in planted.items():
        store.put(path, blob)  # straight into etcd: the proxy never saw these
    with _client(proxy, "alpha") as c:
        for path, (_blob, why) in planted.items():
            with pytest.raises(DecryptionError, match=why) as info:
                c.get(path)
            assert why == "bound to another path" or isinstance(info.value, SignatureError)
    for path, (_blob, why) in planted.items():
        result = vk(proxy, "alpha", "get", path)
        assert result.returncode == (7 if why == "bound to another path" else 11), path
        assert why.encode() in result.stderr and b"evil" not in result.stdout


def test_a_restored_older_envelope_is_detected_by_sdk_and_cli_readers(lifecycle):
    proxy = lifecycle
    path = "/alpha/rollback/flag"
    with _client(proxy, "alpha") as writer, _client(proxy, "alpha") as reader:
        writer.set(path, b"old: feature off")
        old = proxy.store().get(path)
        assert old is not None
        assert reader.get(path) == b"old: feature off"
        ok(vk(proxy, "alpha", "get", path))  # the CLI reader's mark is persisted
        writer.set(path, b"new: feature on")
        assert reader.get(path) == b"new: feature on"
        ok(vk(proxy, "alpha", "get", path))

        proxy.store().put(path, old.value)  # an attacker with etcd access puts it back

        def refused() -> str:
            try:
                reader.get(path)  # the proxy's read cache may show the new value a moment
            except RollbackDetected as exc:
                return exc.message
            return ""

        assert "lower than" in (wait_until(refused) or "")
        cli = vk(proxy, "alpha", "get", path)
        assert cli.returncode == 12 and b"older value was put back" in cli.stderr
        assert b"feature off" not in cli.stdout
        # a reader that never saw the path has no mark: the documented limit
        with _client(proxy, "alpha") as fresh:
            assert fresh.get(path) == b"old: feature off"

        # deleting and writing again: the new first value's counter (the writer's clock)
        # is above every counter the path had, so readers accept it
        writer.delete(path)
        writer.set(path, b"recreated")
        assert reader.get(path) == b"recreated"
        assert ok(vk(proxy, "alpha", "get", path)) == b"recreated"


def _counter_at(proxy, path: str, revision: int) -> int:
    [entry] = proxy.store().load_run(path, path, 1, revision)
    return Envelope.parse(entry.value).counter


def test_writers_take_the_next_counter_with_compare_and_swap(lifecycle):
    """Two writers race on one path: in etcd's history every write's counter is above the
    one before it, so no two writes ever claimed the same number."""
    proxy = lifecycle
    path = "/alpha/counter/k"
    revisions: list[int] = []
    errors: list[BaseException] = []
    with _client(proxy, "alpha") as a, _client(proxy, "alpha") as b:
        revisions.append(a.set(path, b"first"))

        def hammer(client: Client, tag: str) -> None:
            try:
                for i in range(15):
                    revisions.append(client.set(path, f"{tag}{i}".encode()))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=hammer, args=(c, t)) for c, t in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    counters = [_counter_at(proxy, path, r) for r in sorted(revisions)]
    assert len(counters) == 31
    assert all(x < y for x, y in itertools.pairwise(counters)), counters
    print("\n31 writes by two racing writers: 31 distinct, increasing counters")


def test_a_sequence_started_by_a_slow_clock_heals_at_the_next_write(lifecycle):
    """The next counter is the previous one plus one, or the writer's clock if higher: a
    value created by a writer whose clock was an hour slow is followed by normal ones."""
    import time as _time

    proxy = lifecycle
    path = "/alpha/counter/slow"
    alpha = [proxy.keys["alpha"].public]
    slow = _time.time_ns() // 1000 - 3_600_000_000
    proxy.store().put(path, encrypt(b"slow", path, alpha, counter=slow))
    with _client(proxy, "alpha") as reader, _client(proxy, "alpha") as writer:
        assert wait_until(lambda: reader.get(path) == b"slow")
        writer.set(path, b"normal")
        assert wait_until(lambda: reader.get(path) == b"normal")
        assert _envelope(proxy, path).counter > slow + 3_000_000_000


def test_a_planted_far_future_counter_cannot_freeze_a_path(lifecycle):
    proxy = lifecycle
    path = "/alpha/counter/future"
    alpha = [proxy.keys["alpha"].public]
    with proxy.client(proxy.tokens["alpha"]) as c:
        r = c.put(f"/v1/kv{path}", content=encrypt(b"v", path, alpha, counter=2**64 - 1))
        assert r.status_code == 422 and "ahead of the proxy's clock" in r.text
    proxy.store().put(path, encrypt(b"planted", path, alpha, counter=2**64 - 1))
    with _client(proxy, "alpha") as c:
        def refused() -> bool:
            try:
                c.get(path)
            except RollbackDetected as exc:
                return "ahead of this machine's clock" in exc.message
            return False

        assert wait_until(refused)
        c.set(path, b"repaired")  # the writer does not continue from the planted counter
        assert wait_until(lambda: c.get(path) == b"repaired")


def test_get_json_shows_counter_and_no_signer_for_unsigned_values(lifecycle):
    proxy = lifecycle
    ok(vk(proxy, "alpha", "set", "/alpha/plainjson", "v"))
    shown = json.loads(ok(vk(proxy, "alpha", "get", "/alpha/plainjson", "-o", "json")))
    assert shown["signer"] is None and shown["counter"] > 0
    raw = base64.b64decode(json.loads(ok(vk(proxy, "alpha", "get", "/alpha/plainjson",
                                             "-o", "json")))["value_base64"])
    assert raw == b"v"


def test_an_interrupted_rotation_resumes_where_it_stopped(lifecycle):
    """The async client too: interrupt a rotation half-way, resume it from its start revision,
    and every value ends rotated exactly once."""
    import asyncio

    from vaultkey.client import AsyncClient

    proxy = lifecycle
    paths = [f"/alpha/resume/k{i}" for i in range(6)]
    with _client(proxy, "alpha") as c:
        for p in paths:
            c.set(p, p.encode())
    before = {p: _envelope(proxy, p) for p in paths}
    versions = {p: proxy.store().get(p).version for p in paths}

    class Interrupted(Exception):
        pass

    starts: list[int] = []

    def progress(done: int, total: int, path: str, start: int) -> None:
        starts.append(start)
        if done == 4:
            raise Interrupted

    async def go() -> None:
        async with AsyncClient(proxy.addr, proxy.tokens["alpha"], key=proxy.key_path("alpha"),
                               trust=proxy.trust_dir(), cacert=str(proxy.ca_path)) as ac:
            with pytest.raises(Interrupted):
                await ac.rotate("/alpha/resume/", progress=progress)
            report = await ac.rotate("/alpha/resume/", resume=starts[0])
            actions = [o.action for o in report.outcomes]
            assert actions.count("resumed") == 3 and actions.count("rotated") == 3, actions

    asyncio.run(go())
    for p in paths:
        after = _envelope(proxy, p)
        assert after.commitment != before[p].commitment
        assert proxy.store().get(p).version == versions[p] + 1  # rotated once, not twice
    run = vk(proxy, "alpha", "rotate", "/alpha/resume/", "--dry-run")
    assert b"if this is interrupted, run it again with --resume" in run.stderr


def test_rotate_never_re_signs_a_value_no_trusted_writer_signed(signed, tmp_path):
    """An operator whose trust store requires nothing rotates with a signing key: an
    unsigned value planted in etcd is reported as failed, not laundered into a signed one,
    and the other values are still rotated."""
    proxy, release_key, _release, _mallory = signed
    with _client(proxy, "alpha", signing_key=str(release_key)) as c:
        c.set("/alpha/signed/launder/good", b"genuine")
    alpha = [proxy.keys["alpha"].public]
    proxy.store().put("/alpha/signed/launder/planted",
                      encrypt(b"attacker-db-url", "/alpha/signed/launder/planted", alpha))
    lax = tmp_path / "lax-trust"
    shutil.copytree(proxy.trust_dir(), lax)
    (lax / "signatures.trust").unlink()  # this operator requires no signature anywhere
    with _client(proxy, "alpha", trust=lax, signing_key=str(release_key)) as op:
        report = op.rotate("/alpha/signed/launder/")
    actions = {o.path: o for o in report.outcomes}
    assert actions["/alpha/signed/launder/good"].action == "rotated"
    bad = actions["/alpha/signed/launder/planted"]
    assert bad.action == "failed" and "not re-signed" in bad.detail and bad.exit_code == 11
    with _client(proxy, "alpha") as strict, pytest.raises(SignatureError, match="not signed"):
        strict.get("/alpha/signed/launder/planted")
    run = vk(proxy, "alpha", "rotate", "/alpha/signed/launder/", VAULTKEY_TRUST=str(lax),
             VAULTKEY_SIGNING_KEY=str(release_key))
    assert run.returncode == 11 and b"1 rotated, 1 failed" in run.stdout


def test_one_bad_value_does_not_stop_a_rotation(lifecycle):
    proxy = lifecycle
    with _client(proxy, "alpha") as c:
        for i in range(3):
            c.set(f"/alpha/badone/k{i}", b"v")
    proxy.store().put("/alpha/badone/k1", b"VKEY\x01 not an envelope")
    run = vk(proxy, "alpha", "rotate", "/alpha/badone/", "-o", "json")
    assert run.returncode == 7, run.stderr
    actions = {v["path"]: v["action"] for v in json.loads(run.stdout)["values"]}
    assert actions == {"/alpha/badone/k0": "rotated", "/alpha/badone/k1": "failed",
                       "/alpha/badone/k2": "rotated"}


def test_a_live_watch_refuses_a_restored_older_value(lifecycle):
    proxy = lifecycle
    path = "/alpha/watchroll/flag"
    with _client(proxy, "alpha") as writer, _client(proxy, "alpha") as reader:
        writer.set(path, b"old")
        old = proxy.store().get(path)
        new_revision = writer.set(path, b"new")
        assert wait_until(lambda: reader.get(path) == b"new")
        restored = proxy.store().put(path, old.value)
        # resumed after the new value: the restore is a change after the mark, not history
        with reader.watch("/alpha/watchroll/", since=new_revision) as events:
            event = next(e for e in events if e.type == "put")
        assert event.revision == restored
        assert event.value is None and isinstance(event.error, RollbackDetected)


def test_keep_lease_needs_an_existing_revision(lifecycle):
    proxy = lifecycle
    path = "/alpha/keeplease/x"
    with proxy.client(proxy.tokens["alpha"]) as c:
        r = c.put(f"/v1/kv{path}", params={"keep_lease": "true"}, headers={"If-Match": "0"},
                  content=proxy.envelope(path, b"v"))
        assert r.status_code == 422 and "keep_lease" in r.text

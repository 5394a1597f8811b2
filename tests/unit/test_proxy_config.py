"""ProxyConfig refuses unsafe settings; token helpers behave."""

from __future__ import annotations

import pytest

from vaultkey.errors import UsageError
from vaultkey.proxy.config import ProxyConfig, is_loopback
from vaultkey.proxy.tokens import hash_token, new_token, parse_token_id, parse_ttl

ADMIN = "kJ8vQ2xN5rT0wY7bL4mF1sD9gH6cP3aE_u-Zo2Q"


def cfg(tmp_path, **kw):
    base = dict(policies=str(tmp_path), etcd=["http://127.0.0.1:2379"], admin_token=ADMIN)
    base.update(kw)
    return ProxyConfig(**base)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "refusing to serve plain HTTP"),
        ({"insecure": True, "listen": "0.0.0.0:8443"}, "loopback"),
        ({"insecure": True, "listen": "10.0.0.1:8443"}, "loopback"),
        ({"insecure": True, "admin_token": "short"}, "at least 32"),
        ({"tls_cert": "x.pem"}, "go together"),
        ({"insecure": True, "listen": "nope"}, "HOST:PORT"),
        ({"insecure": True, "root": "/vaultkey/"}, "--root"),
        ({"insecure": True, "client_ca": "ca.pem"}, "--client-ca needs"),
    ],
)
def test_unsafe_or_inconsistent_settings_are_refused(tmp_path, kw, message):
    with pytest.raises(UsageError) as info:
        cfg(tmp_path, **kw).check()
    assert message in info.value.diagnostics()


def test_insecure_loopback_is_accepted(tmp_path):
    cfg(tmp_path, insecure=True, listen="127.0.0.1:8200").check()
    cfg(tmp_path, insecure=True, listen="[::1]:8200").check()


def test_config_repr_hides_secrets(tmp_path):
    text = repr(cfg(tmp_path, etcd_password="hunter2-etcd"))
    assert ADMIN not in text and "hunter2-etcd" not in text


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("127.9.9.9", True),
                                             ("::1", True), ("localhost", True),
                                             ("0.0.0.0", False), ("example.com", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def test_tokens_are_random_prefixed_and_parseable():
    a, a_id = new_token()
    b, _ = new_token()
    assert a != b and a.startswith("vkt_") and parse_token_id(a) == a_id
    assert parse_token_id("vkt_zz." + "A" * 43) is None
    assert hash_token(a) != hash_token(b) and len(hash_token(a)) == 64


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800),
                                                ("24h", 86400), ("7d", 604800)])
def test_ttl_parsing(text, seconds):
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("bad", ["", "0", "-5", "1y", "soon", "1.5h"])
def test_bad_ttl_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        parse_ttl(bad)


class _SlowStore:
    """An in-memory stand-in for the sys store whose reads can be paused (unit test only)."""

    def __init__(self) -> None:
        import threading

        self.data: dict[str, bytes] = {}
        self.reading = threading.Event()
        self.proceed = threading.Event()
        self.proceed.set()

    def put(self, path, value, **_kw):
        self.data[path] = value
        return 1

    def get(self, path):
        from vaultkey.proxy.store.etcd import Entry

        value = self.data.get(path)
        self.reading.set()
        self.proceed.wait()
        return None if value is None else Entry(path, value, 1, 1, 1)

    def delete(self, path, **_kw):
        return self.data.pop(path, None) is not None

    def list_keys(self, prefix, **_kw):
        from vaultkey.proxy.store.etcd import KeyPage

        return KeyPage(sorted(p for p in self.data if p.startswith(prefix)), 1, None)

    def range(self, prefix, **_kw):
        from vaultkey.proxy.store.etcd import Entry

        return [Entry(p, v, 1, 1, 1) for p, v in self.data.items() if p.startswith(prefix)], 1


def test_a_lookup_racing_a_revocation_does_not_revive_the_token():
    import threading

    from vaultkey.errors import Unauthenticated
    from vaultkey.proxy.tokens import TokenRegistry

    store = _SlowStore()
    registry = TokenRegistry(store, "admin" * 8)
    token, record = registry.create("g")
    store.proceed.clear()
    result: list[object] = []
    lookup = threading.Thread(target=lambda: result.append(_try(registry, token)))
    lookup.start()
    store.reading.wait(5)  # the lookup has read the record from "etcd"...
    registry.revoke(record.id)  # ...and the token is revoked before it caches it
    store.proceed.set()
    lookup.join(5)
    assert isinstance(result[0], Unauthenticated)  # the racing lookup was refused too
    with pytest.raises(Unauthenticated):
        registry.authenticate(token)


def _try(registry, token):
    try:
        return registry.authenticate(token)
    except Exception as exc:
        return exc


def test_token_records_from_newer_replicas_are_read_and_bad_ones_skipped():
    import json

    from vaultkey.proxy.tokens import TokenRecord, TokenRegistry

    store = _SlowStore()
    registry = TokenRegistry(store, "admin" * 8)
    token, record = registry.create("g", name="n")
    raw = json.loads(store.data[f"/tokens/{record.id}"])
    raw["added_by_a_newer_version"] = True
    store.data[f"/tokens/{record.id}"] = json.dumps(raw).encode()
    store.data["/tokens/0000000000000000"] = b"not json"
    assert registry.authenticate(token).group == "g"
    assert [r.id for r in registry.list()] == [record.id]
    assert TokenRecord.from_json(store.data[f"/tokens/{record.id}"]).name == "n"


class _FlakyDisk:
    """A stream that fails a given number of writes (ENOSPC), then works."""

    def __init__(self, failures: int) -> None:
        self.left = failures
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        if self.left:
            self.left -= 1
            raise OSError(28, "No space left on device")
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_audit_writer_survives_a_full_disk_and_loses_no_line():
    from vaultkey.proxy.audit import AuditWriter

    disk = _FlakyDisk(failures=5)
    writer = AuditWriter(disk, capacity=5)  # type: ignore[arg-type]
    for i in range(5):
        assert writer.reserve()
        writer.write(f"line {i}")
    writer.close()
    assert [x.strip() for x in disk.lines] == [f"line {i}" for i in range(5)]
    assert writer.failures == 5
    assert not writer.reserve()  # closed: no new lines accepted


def test_audit_slots_come_back_after_the_disk_recovers():
    import time

    from vaultkey.proxy.audit import AuditWriter

    disk = _FlakyDisk(failures=3)
    writer = AuditWriter(disk, capacity=2)  # type: ignore[arg-type]
    assert writer.reserve() and writer.reserve()
    writer.write("a")
    writer.write("b")
    deadline = time.monotonic() + 10
    while not writer.reserve():  # both slots held until the disk took the lines
        assert time.monotonic() < deadline
        time.sleep(0.01)
    writer.release()
    writer.close()
    assert [x.strip() for x in disk.lines] == ["a", "b"]

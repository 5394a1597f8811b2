#!/usr/bin/env python3
"""vaultkey demo: encrypt one value for two recipients, store it in a real etcd.

Starts a throwaway etcd on a free loopback port, generates three key pairs
(alice, bob, eve), encrypts a secret for alice and bob bound to its path,
stores the envelope in etcd, reads it back and shows that alice and bob can
decrypt it, eve cannot, and a copy moved to another path is refused.
Everything it creates is removed when it exits.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from vaultkey._dev.etcdproc import EtcdProcess
from vaultkey.crypto import SecretKey, decrypt, encrypt
from vaultkey.errors import DecryptionError, VaultkeyError
from vaultkey.keys import PublicKey
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings, EtcdStore
from vaultkey.signkey import write_keypair

SECRET = b"postgres://app:correct-horse-battery-staple@db.internal/app\n"
PATH = "/payments/db/url"


def say(text: str) -> None:
    print(text, flush=True)


def run(workdir: Path) -> int:
    t0 = time.monotonic()
    with EtcdProcess.start(workdir / "etcd") as etcd:
        say(f"etcd {etcd.url} started in {time.monotonic() - t0:.2f}s (data in {workdir})")
        keys = {}
        for name in ("alice", "bob", "eve"):
            key_path, pub_path = write_keypair(workdir / name)
            keys[name] = (SecretKey.load(key_path), PublicKey.load(pub_path))
            say(f"  keygen {name:5s} -> {key_path.name} (0600), {pub_path.name}: "
                f"{keys[name][1].key_id}")

        blob = encrypt(SECRET, PATH, [keys["alice"][1], keys["bob"][1]])
        conn = EtcdConnection(EtcdSettings(endpoints=[etcd.url]))
        store = EtcdStore(conn, "/vaultkey/kv")
        rev = store.put(PATH, blob)
        say(f"stored {len(SECRET)}-byte secret at {PATH} as a {len(blob)}-byte envelope "
            f"for alice+bob (revision {rev})")
        raw, _ = conn.client().get(b"/vaultkey/kv" + PATH.encode())
        say(f"  etcd holds ciphertext only: plaintext visible in etcd? {SECRET.strip() in raw}")

        entry = store.get(PATH)
        assert entry is not None
        ok = True
        for name in ("alice", "bob"):
            got = decrypt(entry.value, PATH, keys[name][0])
            ok &= got == SECRET
            say(f"  {name:5s} decrypts: {got!r}  byte-exact: {got == SECRET}")
        try:
            decrypt(entry.value, PATH, keys["eve"][0])
            ok = False
            say("  eve   decrypted it: THIS IS A BUG")
        except DecryptionError as exc:
            say(f"  eve   refused: {exc.message}")
        store.put("/other/service/db/url", entry.value)
        try:
            decrypt(store.get("/other/service/db/url").value, "/other/service/db/url",  # type: ignore[union-attr]
                    keys["alice"][0])
            ok = False
        except DecryptionError as exc:
            say(f"  copy at /other/service/db/url refused: {exc.message}")
        conn.close()
    say(f"etcd stopped; demo {'PASSED' if ok else 'FAILED'} in {time.monotonic() - t0:.2f}s")
    return 0 if ok else 1


def main() -> int:
    try:
        with tempfile.TemporaryDirectory(prefix="vaultkey-demo-") as tmp:
            return run(Path(tmp))
    except VaultkeyError as exc:
        print(f"demo: error: {exc.diagnostics()}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

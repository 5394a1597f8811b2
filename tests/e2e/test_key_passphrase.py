"""Passphrase-protected key files through the real CLI against the real TLS proxy."""

from __future__ import annotations

import shutil

from tests.e2e.test_cli import ok, vk


def _secret_file(tmp_path, name: str, text: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(text)
    path.chmod(0o600)
    return str(path)


def test_protect_use_change_and_remove_a_passphrase(proxy, tmp_path):
    key = tmp_path / "alpha.key"
    shutil.copy(proxy.key_path("alpha"), key)
    key.chmod(0o600)
    first = _secret_file(tmp_path, "first", b"first passphrase\n")
    second = _secret_file(tmp_path, "second", b"second passphrase")
    ok(vk(proxy, "alpha", "set", "/alpha/pp/x", stdin=b"kept"))

    # add a passphrase: the key is the same key, now unreadable without it
    ok(vk(proxy, "alpha", "key", "passwd", str(key), VAULTKEY_NEW_PASSPHRASE_FILE=first))
    assert "vksecp1_" in key.read_text() and oct(key.stat().st_mode & 0o777) == "0o600"
    env = {"VAULTKEY_KEY": str(key)}
    assert ok(vk(proxy, "alpha", "get", "/alpha/pp/x", VAULTKEY_PASSPHRASE_FILE=first, **env)) \
        == b"kept"
    # a wrong passphrase: its own exit code and message, never a traceback or "decryption"
    wrong = vk(proxy, "alpha", "get", "/alpha/pp/x", VAULTKEY_PASSPHRASE_FILE=second, **env)
    assert wrong.returncode == 10 and b"wrong passphrase" in wrong.stderr
    assert b"Traceback" not in wrong.stderr and b"decrypt" not in wrong.stderr.lower()
    # no passphrase and no terminal: a clear error, not a hang
    missing = vk(proxy, "alpha", "get", "/alpha/pp/x", **env)
    assert missing.returncode == 66 and b"VAULTKEY_PASSPHRASE_FILE" in missing.stderr

    # change it, then remove it
    ok(vk(proxy, "alpha", "key", "passwd", str(key), VAULTKEY_PASSPHRASE_FILE=first,
          VAULTKEY_NEW_PASSPHRASE_FILE=second))
    assert ok(vk(proxy, "alpha", "get", "/alpha/pp/x", VAULTKEY_PASSPHRASE_FILE=second,
                 **env)) == b"kept"
    ok(vk(proxy, "alpha", "key", "passwd", str(key), "--remove",
          VAULTKEY_PASSPHRASE_FILE=second))
    assert "vksec1_" in key.read_text()
    assert ok(vk(proxy, "alpha", "get", "/alpha/pp/x", **env)) == b"kept"


def test_keygen_with_a_passphrase(proxy, tmp_path):
    secret = _secret_file(tmp_path, "pp", b"a passphrase")
    ok(vk(proxy, "alpha", "keygen", str(tmp_path / "new"), "--passphrase",
          VAULTKEY_NEW_PASSPHRASE_FILE=secret))
    assert "vksecp1_" in (tmp_path / "new.key").read_text()
    assert "vkpub1_" in (tmp_path / "new.pub").read_text()


def test_a_keyring_of_several_key_files_opens_each_value_with_its_own_key(proxy, tmp_path):
    """During a rotation a reader holds the old and the new key: VAULTKEY_KEY=a.key:b.key."""
    import os

    from vaultkey.signkey import write_keypair

    other, _pub = write_keypair(tmp_path / "other")  # a key no policy names
    alpha = proxy.key_path("alpha")
    ok(vk(proxy, "alpha", "set", "/alpha/ring/x", stdin=b"ring"))
    for ring in (f"{other}{os.pathsep}{alpha}", f"{alpha}{os.pathsep}{other}"):
        assert ok(vk(proxy, "alpha", "get", "/alpha/ring/x", VAULTKEY_KEY=ring)) == b"ring"
    alone = vk(proxy, "alpha", "get", "/alpha/ring/x", VAULTKEY_KEY=str(other))
    assert alone.returncode == 7 and b"no stanza" in alone.stderr

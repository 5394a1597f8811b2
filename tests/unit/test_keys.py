"""Key files: permissions, formats and clear errors."""

from __future__ import annotations

import os
import stat

import pytest

from vaultkey._cli import main
from vaultkey.crypto import SecretKey, write_keypair
from vaultkey.errors import KeyFileError
from vaultkey.keys import PublicKey


def test_keygen_writes_secret_with_mode_0600_and_public_file(tmp_path, capsys):
    assert main(["keygen", str(tmp_path / "payments")]) == 0
    key, pub = tmp_path / "payments.key", tmp_path / "payments.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loaded = SecretKey.load(key)
    out = capsys.readouterr().out
    assert loaded.key_id in out
    assert f"# key id: {loaded.key_id}" in pub.read_text()
    assert PublicKey.load(pub) == loaded.public


def test_secret_is_0600_even_with_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        key, _ = write_keypair(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_keygen_refuses_to_overwrite(tmp_path, capsys):
    write_keypair(tmp_path / "k")
    before = (tmp_path / "k.key").read_text()
    assert main(["keygen", str(tmp_path / "k")]) == KeyFileError.exit_code
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "k.key").read_text() == before


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_secret_key_readable_by_others_is_refused_with_fix(tmp_path, mode):
    key, _ = write_keypair(tmp_path / "k")
    key.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        SecretKey.load(key)
    assert f"{mode:04o}" in info.value.message
    assert f"chmod 600 {key}" in info.value.diagnostics()


def test_secret_key_0400_is_accepted(tmp_path):
    key, _ = write_keypair(tmp_path / "k")
    key.chmod(0o400)
    SecretKey.load(key)


def _key_line(path):
    return next(ln for ln in path.read_text().splitlines() if not ln.startswith("#"))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda s: s[:-5], "wrong length"),
        (lambda s: s[:20] + ("A" if s[20] != "A" else "B") + s[21:], "checksum mismatch"),
        (lambda s: s.replace("vksec1_", "vksec2_"), "not a vaultkey key"),
        (lambda s: s.replace("vksec1_", "vkpub1_"), "this is a public key"),
        (lambda s: s[:30] + "!!" + s[32:], "corrupted"),
        (lambda s: "", "no key found"),
        (lambda s: s + "\n" + s, "more than one key line"),
    ],
)
def test_corrupted_secret_key_text_gives_clear_error(tmp_path, mangle, message):
    key, _ = write_keypair(tmp_path / "k")
    key.write_text(mangle(_key_line(key)) + "\n")
    with pytest.raises(KeyFileError, match=message):
        SecretKey.load(key)


def test_public_key_file_used_as_secret_is_named(tmp_path):
    _, pub = write_keypair(tmp_path / "k")
    pub.chmod(0o600)
    with pytest.raises(KeyFileError, match="this is a public key, but a secret key is needed"):
        SecretKey.load(pub)


def test_corrupted_public_key_gives_clear_error(tmp_path):
    _, pub = write_keypair(tmp_path / "k")
    line = _key_line(pub)
    pub.write_text(line[:-1] + ("x" if line[-1] != "x" else "y") + "\n")
    with pytest.raises(KeyFileError, match="checksum mismatch"):
        PublicKey.load(pub)


def test_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(KeyFileError, match="cannot open secret key file"):
        SecretKey.load(tmp_path / "absent.key")


def test_binary_garbage_key_file_is_a_clear_error(tmp_path):
    path = tmp_path / "g.key"
    path.write_bytes(b"\xff\xfe\x00garbage")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not UTF-8"):
        SecretKey.load(path)


def test_key_text_round_trips():
    sk = SecretKey.generate()
    assert SecretKey.from_text(sk.to_text()).public == sk.public
    assert PublicKey.from_text(sk.public.to_text()) == sk.public
    assert sk.key_id.startswith("vk1_") and len(sk.key_id) == 36

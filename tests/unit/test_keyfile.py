"""Passphrase-protected secret key files (docs/FORMAT.md section 2.1)."""

from __future__ import annotations

import base64

import pytest

from vaultkey.crypto import SecretKey
from vaultkey.errors import KeyFileError, WrongPassphrase
from vaultkey.keyfile import MEMLIMIT, OPSLIMIT, protect, unprotect

FAST = {"opslimit": 1, "memlimit": 8 * 1024 * 1024}  # tests only; files use the defaults
RAW = bytes(range(32))
VECTOR = ("vksecp1_AQAAAAEAACAAAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJC"
          "UmJx1jooU-jkz_5lsqxadCPMPeA_kr0jXK27yu1-j8kziS5tOArV4we8xeftcy697vDg")


def test_the_documented_vector():
    """FORMAT.md 2.1's example: an independent implementation must produce these bytes."""
    text = protect(RAW, b"correct horse", salt=bytes(range(16)),
                   nonce=bytes(range(16, 40)), **FAST)
    assert text == VECTOR
    assert unprotect(VECTOR, b"correct horse") == RAW


def test_round_trip_and_a_wrong_passphrase_is_its_own_error():
    text = protect(RAW, "pässword".encode(), **FAST)
    assert text.startswith("vksecp1_") and unprotect(text, "pässword".encode()) == RAW
    with pytest.raises(WrongPassphrase, match="wrong passphrase") as caught:
        unprotect(text, b"password")
    assert caught.value.exit_code == 10 and "decrypt" not in caught.value.message
    assert isinstance(caught.value, KeyFileError)


def test_the_default_cost_is_libsodiums_moderate():
    assert (OPSLIMIT, MEMLIMIT) == (3, 256 * 1024 * 1024)


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2], lambda t: t + "A", lambda t: t.replace("_", "_+", 1),
    lambda t: t[:9] + ("B" if t[9] != "B" else "C") + t[10:],
])
def test_corrupted_or_altered_text_is_refused(mangle):
    text = protect(RAW, b"pw", **FAST)
    with pytest.raises(KeyFileError):
        unprotect(mangle(text), b"pw")


def test_a_planted_file_with_a_huge_cost_is_refused_before_any_work():
    text = protect(RAW, b"pw", **FAST)
    body = bytearray(base64.urlsafe_b64decode(text[8:] + "=" * (-len(text[8:]) % 4)))
    body[5:9] = (2**31).to_bytes(4, "big")  # memlimit in KiB: 2 TiB
    planted = "vksecp1_" + base64.urlsafe_b64encode(bytes(body)).rstrip(b"=").decode()
    with pytest.raises(KeyFileError, match="unreasonable"):
        unprotect(planted, b"pw")
    assert unprotect(text, b"pw") == RAW


def test_a_protected_key_file_loads_with_the_passphrase_file_and_never_prompts_a_service(
        tmp_path, monkeypatch):
    key = SecretKey.generate()
    path = tmp_path / "k.key"
    path.write_text(key.to_file_text(passphrase=b"s3cret"))
    path.chmod(0o600)
    monkeypatch.delenv("VAULTKEY_PASSPHRASE_FILE", raising=False)
    with pytest.raises(KeyFileError, match="no terminal"):
        SecretKey.load(path)  # pytest's stdin is not a terminal: an error, not a hang
    secret = tmp_path / "pass"
    secret.write_bytes(b"s3cret\n")
    secret.chmod(0o644)
    monkeypatch.setenv("VAULTKEY_PASSPHRASE_FILE", str(secret))
    with pytest.raises(KeyFileError, match="too open"):
        SecretKey.load(path)
    secret.chmod(0o600)
    assert SecretKey.load(path).key_id == key.key_id
    assert SecretKey.load(path, passphrase=b"s3cret").key_id == key.key_id
    with pytest.raises(WrongPassphrase):
        SecretKey.load(path, passphrase=b"nope")

"""Envelope encryption: round trips, tampering, binding, sizes."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultkey import crypto
from vaultkey.crypto import SecretKey, _encrypt_from_parts, decrypt, encrypt, open_envelope
from vaultkey.envelope import MAX_ENVELOPE_BYTES, Envelope, overhead
from vaultkey.errors import DecryptionError, InvalidPath, ValueTooLarge

PATH = "/app/db/password"


@pytest.fixture(scope="module")
def keys() -> list[SecretKey]:
    return [SecretKey.generate() for _ in range(4)]


def test_round_trip_one_recipient(keys):
    blob = encrypt(b"s3cret", PATH, [keys[0].public])
    assert decrypt(blob, PATH, keys[0]) == b"s3cret"


def test_round_trip_three_recipients_each_can_decrypt(keys):
    blob = encrypt(b"shared value\n", PATH, [k.public for k in keys[:3]])
    for key in keys[:3]:
        assert decrypt(blob, PATH, key) == b"shared value\n"


def test_non_recipient_gets_no_stanza_error(keys):
    blob = encrypt(b"x", PATH, [keys[0].public, keys[1].public])
    with pytest.raises(DecryptionError, match="no stanza for key vk1_") as info:
        decrypt(blob, PATH, keys[3])
    assert type(info.value) is DecryptionError


def test_empty_value_round_trips(keys):
    blob = encrypt(b"", PATH, [keys[0].public])
    assert decrypt(blob, PATH, keys[0]) == b""


def test_one_mebibyte_value_round_trips(keys):
    value = bytes(range(256)) * 4096
    assert len(value) == 1024 * 1024
    blob = encrypt(value, PATH, [k.public for k in keys[:3]])
    assert len(blob) <= MAX_ENVELOPE_BYTES
    assert decrypt(blob, PATH, keys[2]) == value


def test_value_whose_envelope_exceeds_limit_is_refused_with_clear_error(keys):
    limit = MAX_ENVELOPE_BYTES - overhead(PATH, 1)
    assert len(encrypt(b"x" * limit, PATH, [keys[0].public])) == MAX_ENVELOPE_BYTES
    with pytest.raises(ValueTooLarge, match=r"1\.5 MiB"):
        encrypt(b"x" * (limit + 1), PATH, [keys[0].public])


def test_fresh_data_key_and_nonce_per_write(keys):
    a = Envelope.parse(encrypt(b"same", PATH, [keys[0].public]))
    b = Envelope.parse(encrypt(b"same", PATH, [keys[0].public]))
    assert a.nonce != b.nonce
    assert a.commitment != b.commitment
    assert a.ciphertext != b.ciphertext


def test_every_single_byte_flip_fails_with_the_one_error(keys):
    recipients = [keys[0].public, keys[1].public]
    blob = encrypt(b"tiny", "/a", recipients)
    for pos in range(len(blob)):
        for bit in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[pos] ^= bit
            for reader in keys[:2]:
                with pytest.raises(DecryptionError) as info:
                    decrypt(bytes(tampered), "/a", reader)
                assert type(info.value) is DecryptionError, pos


def test_every_truncation_fails(keys):
    blob = encrypt(b"tiny", "/a", [keys[0].public])
    for cut in range(len(blob)):
        with pytest.raises(DecryptionError):
            decrypt(blob[:cut], "/a", keys[0])


def test_appended_bytes_fail(keys):
    blob = encrypt(b"tiny", "/a", [keys[0].public])
    with pytest.raises(DecryptionError, match="trailing"):
        decrypt(blob + b"\x00", "/a", keys[0])


def test_ciphertext_copied_to_another_path_fails(keys):
    blob = encrypt(b"db password", "/app/config", [keys[0].public])
    with pytest.raises(DecryptionError, match="another path"):
        decrypt(blob, "/other/service/config", keys[0])


def test_rewriting_the_bound_path_inside_the_envelope_fails(keys):
    blob = encrypt(b"v", "/app/aaaa", [keys[0].public])
    moved = blob.replace(b"/app/aaaa", b"/app/bbbb")
    with pytest.raises(DecryptionError, match="integrity check failed"):
        decrypt(moved, "/app/bbbb", keys[0])


def test_unknown_version_fails_with_the_one_error(keys):
    blob = bytearray(encrypt(b"v", "/a", [keys[0].public]))
    blob[4] = 2
    with pytest.raises(DecryptionError, match="unsupported envelope version 2"):
        decrypt(bytes(blob), "/a", keys[0])


def test_stanza_swapped_from_another_envelope_fails(keys):
    one = Envelope.parse(encrypt(b"first", "/a", [keys[0].public]))
    two = Envelope.parse(encrypt(b"second", "/a", [keys[0].public]))
    franken = Envelope(one.path, one.counter, two.stanzas, one.commitment, one.nonce,
                       one.ciphertext)
    with pytest.raises(DecryptionError, match="integrity"):
        decrypt(franken.serialize(), "/a", keys[0])


def test_duplicate_recipients_are_wrapped_once(keys):
    blob = encrypt(b"v", "/a", [keys[0].public, keys[0].public])
    assert len(Envelope.parse(blob).stanzas) == 1


def test_invalid_path_is_refused_at_encryption(keys):
    with pytest.raises(InvalidPath):
        encrypt(b"v", "/a/../b", [keys[0].public])


def test_secret_key_repr_hides_the_key(keys):
    text = keys[0].to_text()
    assert text not in repr(keys[0])
    assert "hidden" in repr(keys[0])


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2048), st.lists(st.integers(0, 3), min_size=1, max_size=4))
def test_round_trip_property(keys, value, picks):
    recips = [keys[i] for i in sorted(set(picks))]
    blob = encrypt(value, "/prop/k", [k.public for k in recips])
    for key in keys:
        if key in recips:
            assert decrypt(blob, "/prop/k", key) == value
        else:
            with pytest.raises(DecryptionError):
                decrypt(blob, "/prop/k", key)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_decryption_error(keys, junk):
    with pytest.raises(DecryptionError):
        decrypt(junk, "/a", keys[0])


# --- path rules at decryption (docs/FORMAT.md section 6, steps 2 and 3)


@pytest.mark.parametrize(
    ("asked", "detail"),
    [
        ("", "must be absolute"),
        ("app/db/password", "must be absolute"),
        (PATH + "/", "must not end in '/'"),
        ("/app//db/password", "empty segment"),
        ("/app/./db/password", "'.' segment"),
        ("/app/x/../db/password", "'..' segment"),
        ("/app/+/password", "'+' segment"),
        (PATH + "\x00", "control character U+0000"),
        (PATH + "\x85", "control character U+0085"),
        ("/app\\db/password", "backslash"),
        ("/app/db%2fpassword", "'%'"),
        ("/" + "a" * 1024, "1025 bytes"),
        (PATH + "\udc80", "not valid UTF-8"),
        (b"/app/db/password", "must be a string"),
    ],
)
def test_invalid_path_asked_for_is_the_one_decryption_error(keys, asked, detail):
    blob = encrypt(b"v", PATH, [keys[0].public])
    with pytest.raises(DecryptionError, match=r"^invalid path: ") as info:
        decrypt(blob, asked, keys[0])
    assert type(info.value) is DecryptionError
    assert detail in info.value.message


def test_lone_surrogate_is_refused_not_replaced(keys):
    # Regression: the path used to be encoded with errors="replace", so
    # '/a\udc80' compared equal to '/a?' and opened the value stored there.
    blob = encrypt(b"v", "/a?", [keys[0].public])
    with pytest.raises(DecryptionError, match="invalid path") as info:
        decrypt(blob, "/a\udc80", keys[0])
    assert type(info.value) is DecryptionError
    assert decrypt(blob, "/a?", keys[0]) == b"v"


@pytest.mark.parametrize("stored", ["/a//b", "/a/../b", "/a/", "/a/+", "/a\x00", "/a%00"])
def test_envelope_bound_to_an_invalid_path_is_malformed(keys, stored):
    # A correctly sealed envelope (valid AEAD over its header) whose stored path
    # breaks the rules is refused even when asked for by that exact path.
    blob = _encrypt_from_parts(b"v", stored, [keys[0].public], data_key=bytes(32),
                               nonce=bytes(24), ephemeral_secrets=[bytes(range(32))])
    with pytest.raises(DecryptionError,
                       match=r"^malformed envelope: envelope path is not a valid key path") as info:
        decrypt(blob, stored, keys[0])
    assert type(info.value) is DecryptionError


def test_open_envelope_checks_the_stored_path_of_an_unparsed_envelope(keys):
    env = Envelope.parse(encrypt(b"v", "/a/b", [keys[0].public]))
    odd = dataclasses.replace(env, path="/a/../b")
    with pytest.raises(DecryptionError, match="not a valid key path") as info:
        open_envelope(odd, "/a/../b", keys[0])
    assert type(info.value) is DecryptionError


def test_a_moved_envelope_is_caught_by_the_path_comparison_not_the_aead(keys, monkeypatch):
    # FORMAT.md section 5: the AD is the stored header, which a move does not change.
    blob = encrypt(b"v", "/app/config", [keys[0].public])
    with pytest.raises(DecryptionError, match="bound to another path"):
        decrypt(blob, "/other/config", keys[0])
    # Without the comparison, the AEAD alone would accept the moved copy.
    monkeypatch.setattr(crypto, "_requested_path", lambda _path: b"/app/config")
    assert decrypt(blob, "/other/config", keys[0]) == b"v"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_requested_path_gives_plaintext_or_the_one_error(keys, asked):
    blob = encrypt(b"v", "/a", [keys[0].public])
    if asked == "/a":
        assert decrypt(blob, asked, keys[0]) == b"v"
        return
    with pytest.raises(DecryptionError) as info:
        decrypt(blob, asked, keys[0])
    assert type(info.value) is DecryptionError

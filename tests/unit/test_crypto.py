"""Envelope encryption: round trips, tampering, binding, sizes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultkey.crypto import SecretKey, decrypt, encrypt
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

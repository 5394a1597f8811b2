"""The wire format parser (no cryptography): strictness and documented numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vaultkey.envelope import MAX_ENVELOPE_BYTES, Envelope, Signature, Stanza, overhead
from vaultkey.errors import MalformedEnvelope

ROOT = Path(__file__).resolve().parents[2]


def _env(**kw):
    base = dict(path="/a/b", counter=0, stanzas=(Stanza(b"k" * 16, b"w" * 80),),
                commitment=b"c" * 32, nonce=b"n" * 24, ciphertext=b"t" * 16)
    base.update(kw)
    return Envelope(**base)


def test_documented_overhead_and_limit():
    # docs/FORMAT.md: overhead 93 + P + 96n; limit 1.5 MiB - 8 KiB.
    assert overhead("/app/db/password", 1) == 205
    assert overhead("/a", 3) == 93 + 2 + 288
    assert MAX_ENVELOPE_BYTES == 1_564_672
    assert len(_env().serialize()) == overhead("/a/b", 1)


def test_first_documented_vector_layout():
    vec = json.loads((ROOT / "tests/vectors/envelope_v1.json").read_text())["vectors"][0]
    blob = bytes.fromhex(vec["envelope_hex"])
    assert blob[:4] == b"VKEY" and blob[4] == 1 and blob[5] == 0
    assert blob[6:8] == (16).to_bytes(2, "big") and blob[8:24] == b"/app/db/password"
    assert blob[24:32] == bytes(8) and blob[32] == 1
    h = 73 + 16 + 96
    assert int.from_bytes(blob[h : h + 4], "big") == 44 == len(blob) - h - 4


def test_serialize_parse_round_trip_with_signature_block():
    env = _env(counter=2**63, signature=Signature(b"s" * 16, b"g" * 64))
    blob = env.serialize()
    assert blob[5] == 1
    assert Envelope.parse(blob) == env


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"XKEY" + b[4:], "bad magic"),
        (lambda b: b[:4] + b"\x09" + b[5:], "unsupported envelope version 9"),
        (lambda b: b[:5] + b"\x02" + b[6:], "unknown flag bits"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"x", "trailing bytes"),
        (lambda b: b"", "truncated"),
    ],
)
def test_parser_rejects_malformed_input(mutate, message):
    with pytest.raises(MalformedEnvelope, match=message):
        Envelope.parse(mutate(_env().serialize()))


def test_duplicate_stanzas_are_malformed():
    stanza = Stanza(b"k" * 16, b"w" * 80)
    blob = _env(stanzas=(stanza, stanza)).__dict__
    env = Envelope(**blob)
    with pytest.raises(MalformedEnvelope, match="duplicate recipient"):
        env.serialize()


def test_zero_stanzas_are_malformed():
    with pytest.raises(MalformedEnvelope, match="1 to 255"):
        _env(stanzas=()).serialize()


def test_non_utf8_path_is_malformed():
    blob = bytearray(_env(path="/abc").serialize())
    blob[9] = 0xFF
    with pytest.raises(MalformedEnvelope, match="UTF-8"):
        Envelope.parse(bytes(blob))


def test_short_ciphertext_is_malformed():
    with pytest.raises(MalformedEnvelope, match="shorter than its tag"):
        _env(ciphertext=b"x").serialize()


# --- check order and the stored path (docs/FORMAT.md section 4)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "truncated"),
        (b"V", "truncated"),
        (b"VKE", "truncated"),
        (b"VKEY", "truncated"),
        (b"X", "bad magic"),
        (b"VKX", "bad magic"),
        (b"VKEZ\x01\x00", "bad magic"),
        (b"VKEY\x02", "unsupported envelope version 2"),
        (b"VKEY\x02\x00", "unsupported envelope version 2"),
        (b"VKEY\x02" + bytes(7), "unsupported envelope version 2"),
        (b"VKEY\x00", "unsupported envelope version 0"),
        (b"VKEY\xff" + bytes(300), "unsupported envelope version 255"),
        (b"VKEY\x01", "truncated"),
        (b"VKEY\x01\x02", "unknown flag bits 0x02"),
        (b"VKEY\x01\x80\x00\x02/a", "unknown flag bits 0x80"),
        (b"VKEY\x01\x00\x04\x01", "path too long"),
        (b"VKEY\x01\x00\x00\x02/a", "truncated"),
        (b"VKEY\x01\x00\x00\x02/\xff", "not UTF-8"),
        (b"VKEY\x01\x00\x00\x02a/", "not a valid key path"),
        (b"VKEY\x01\x00\x00\x02/a" + bytes(9), "1 to 255 recipients"),
    ],
)
def test_fields_are_checked_in_layout_order_on_short_input(blob, message):
    # Why: a future version must be reported as such, never as "truncated".
    with pytest.raises(MalformedEnvelope, match=message):
        Envelope.parse(blob)


def test_length_checks_come_before_reading_what_they_describe():
    blob = _env().serialize()
    h = len(blob) - 4 - 16
    short_ct = blob[:h] + (15).to_bytes(4, "big") + blob[h + 4 : h + 4 + 15]
    with pytest.raises(MalformedEnvelope, match="shorter than its tag"):
        Envelope.parse(short_ct)
    two = _env(stanzas=(Stanza(b"k" * 16, b"w" * 80),) * 2)
    with pytest.raises(MalformedEnvelope, match="duplicate recipient"):
        Envelope.parse(two.signed_bytes())  # signed_bytes() does not check; serialize() would


@pytest.mark.parametrize(
    "path",
    ["a/b", "/a//b", "/a/./b", "/a/../b", "/a/+", "/a/", "/", "/a\x00", "/a\x9f", "/a\\b",
     "/a%2f", ""],
)
def test_stored_path_must_follow_the_key_path_rules(path):
    # serialize() checks the layout only (so test vectors can carry such paths);
    # the parser holds the stored path to the same rules as a requested path.
    with pytest.raises(MalformedEnvelope, match="not a valid key path"):
        Envelope.parse(_env(path=path).serialize())


def test_stored_path_over_1024_bytes_is_refused_before_it_is_read():
    header = b"VKEY\x01\x00" + (1025).to_bytes(2, "big")
    for blob in (header, header + b"/" + b"x" * 1024):  # the length alone is enough
        with pytest.raises(MalformedEnvelope, match="path too long"):
            Envelope.parse(blob)
    with pytest.raises(MalformedEnvelope, match="path too long"):
        _env(path="/" + "x" * 1024).serialize()

"""Vectors in tests/vectors/: known answers decrypt, negative vectors fail as recorded."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vaultkey.crypto import SecretKey, decrypt
from vaultkey.envelope import Envelope
from vaultkey.errors import DecryptionError, KeyFileError, MalformedEnvelope, SignatureError
from vaultkey.keys import PublicKey, SigningPublicKey
from vaultkey.signatures import Writers
from vaultkey.signkey import SigningKey

ROOT = Path(__file__).resolve().parents[2]
DATA = json.loads((ROOT / "tests/vectors/envelope_v1.json").read_text(encoding="utf-8"))
KEYS = {name: SecretKey.from_text(k["secret"]) for name, k in DATA["keys"].items()}
SIGNING = {name: SigningKey.from_text(k["secret"]) for name, k in DATA["signing_keys"].items()}
NEGATIVE = json.loads((ROOT / "tests/vectors/envelope_v1_negative.json").read_text("utf-8"))
KEY_TEXT = json.loads((ROOT / "tests/vectors/key_text_v1_negative.json").read_text("utf-8"))

# docs/FORMAT.md names every rule; each must have at least one negative vector.
PARSER_RULES = {"magic", "version", "flags", "path_len", "path_utf8", "path_rules",
                "stanza_count", "distinct_kids", "ct_len", "length", "trailing"}
DECRYPTION_CHECKS = {"requested_path", "path_binding", "signer", "signature", "stanza", "unwrap",
                     "commitment", "aead"}
SIGNATURE_CHECKS = {"signer", "signature"}
ERRORS = {"DecryptionError": DecryptionError, "SignatureError": SignatureError}
SIGNED = [v for v in DATA["vectors"] if "signer" in v]
UNSIGNED = [v for v in DATA["vectors"] if "signer" not in v]
KEY_TEXT_RULES = {"key_lines", "key_tag", "key_type", "key_padding", "key_alphabet",
                  "key_length", "key_checksum"}


@pytest.mark.parametrize("vector", DATA["vectors"], ids=lambda v: v["name"])
def test_vector_decrypts_to_recorded_plaintext(vector):
    blob = bytes.fromhex(vector["envelope_hex"])
    for name in vector["recipients"]:
        assert decrypt(blob, vector["path"], KEYS[name]).hex() == vector["plaintext_hex"]


@pytest.mark.parametrize("vector", DATA["vectors"], ids=lambda v: v["name"])
def test_vector_header_fields_match_record(vector):
    env = Envelope.parse(bytes.fromhex(vector["envelope_hex"]))
    assert env.path == vector["path"]
    assert env.counter == vector["counter"]
    assert [s.kid.hex() for s in env.stanzas] == [
        DATA["keys"][n]["key_id"].removeprefix("vk1_") for n in vector["recipients"]
    ]


@pytest.mark.parametrize("vector", DATA["vectors"], ids=lambda v: v["name"])
def test_vector_refuses_non_recipient(vector):
    with pytest.raises(DecryptionError, match="no stanza"):
        decrypt(bytes.fromhex(vector["envelope_hex"]), vector["path"], KEYS[DATA["non_recipient"]])


def test_recorded_keys_match_their_public_halves_and_ids():
    for name, k in DATA["keys"].items():
        assert KEYS[name].public.to_text() == k["public"]
        assert KEYS[name].key_id == k["key_id"]
    for name, k in DATA["signing_keys"].items():
        assert SIGNING[name].public.to_text() == k["public"]
        assert SIGNING[name].key_id == k["key_id"]


def _writers(names):
    """The trust store of a reader that requires a signature by one of *names*."""
    return Writers.of([(n, SigningPublicKey.from_text(DATA["signing_keys"][n]["public"]))
                       for n in names])


def test_there_are_signed_and_unsigned_vectors():
    assert {v["signer"] for v in SIGNED} == {"release", "ops"}
    assert any(len(v["recipients"]) > 1 for v in SIGNED)
    assert DATA["untrusted_signer"] not in {v["signer"] for v in SIGNED}
    assert UNSIGNED


@pytest.mark.parametrize("vector", SIGNED, ids=lambda v: v["name"])
def test_signed_vector_opens_only_for_a_reader_trusting_its_signer(vector):
    blob = bytes.fromhex(vector["envelope_hex"])
    signer = DATA["signing_keys"][vector["signer"]]
    assert vector["writers"] == [vector["signer"]]
    assert vector["signer_public"] == signer["public"]
    assert vector["signer_key_id"] == signer["key_id"]
    others = [n for n in DATA["signing_keys"] if n != vector["signer"]]
    for name in vector["recipients"]:
        assert decrypt(blob, vector["path"], KEYS[name],
                       writers=_writers(vector["writers"])).hex() == vector["plaintext_hex"]
        assert decrypt(blob, vector["path"], KEYS[name],
                       writers=_writers([*others, vector["signer"]])).hex() == (
            vector["plaintext_hex"])
        with pytest.raises(SignatureError, match="not a trusted writer") as info:
            decrypt(blob, vector["path"], KEYS[name], writers=_writers(others))
        assert signer["key_id"] in info.value.message


@pytest.mark.parametrize("vector", SIGNED, ids=lambda v: v["name"])
def test_signed_vector_verifies_from_the_spec_alone(vector):
    # docs/FORMAT.md sections 2.2, 4 and 6: no vaultkey code, only the byte layout,
    # the key text rules, the signing key id and RFC 8032 Ed25519.
    blob = bytes.fromhex(vector["envelope_hex"])
    assert blob[5] & 0x01
    body = vector["signer_public"].removeprefix("vksigpub1_")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))[:32]
    kid = hashlib.sha256(b"vaultkey signing key id v1\x00" + raw).digest()[:16]
    assert "vks1_" + kid.hex() == vector["signer_key_id"]
    assert blob[-80:-64] == kid
    public = Ed25519PublicKey.from_public_bytes(raw)
    public.verify(blob[-64:], blob[:-80])
    with pytest.raises(InvalidSignature):  # the last ciphertext byte is covered too
        public.verify(blob[-64:], blob[:-81] + bytes([blob[-81] ^ 1]))
    env = Envelope.parse(blob)
    assert env.signature is not None and env.signature.signer_kid == kid
    assert env.signed_bytes() == blob[:-80]


@pytest.mark.parametrize("vector", UNSIGNED, ids=lambda v: v["name"])
def test_unsigned_vector_is_refused_where_a_signature_is_required(vector):
    blob = bytes.fromhex(vector["envelope_hex"])
    assert Envelope.parse(blob).signature is None
    with pytest.raises(SignatureError, match="not signed"):
        decrypt(blob, vector["path"], KEYS[vector["recipients"][0]], writers=_writers(["release"]))


def _generator():
    spec = importlib.util.spec_from_file_location("gen_vectors", ROOT / "scripts/gen_vectors.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def test_generator_is_deterministic_and_file_is_current():
    gen = _generator()
    assert gen.render() == (ROOT / "tests/vectors/envelope_v1.json").read_text(encoding="utf-8")


def test_generator_negative_files_are_current():
    files = _generator().outputs()
    assert {p.name for p in files} == {
        "envelope_v1.json", "envelope_v1_negative.json", "key_text_v1_negative.json"}
    for path, text in files.items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale"


def test_every_rule_and_check_has_a_negative_vector():
    assert {v["check"] for v in NEGATIVE["vectors"]} == PARSER_RULES | DECRYPTION_CHECKS
    assert {v["check"] for v in KEY_TEXT["refused"]} == KEY_TEXT_RULES
    names = [v["name"] for v in NEGATIVE["vectors"]] + [v["name"] for v in KEY_TEXT["refused"]]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("vector", NEGATIVE["vectors"], ids=lambda v: v["name"])
def test_negative_vector_fails_with_recorded_error(vector):
    blob = bytes.fromhex(vector["envelope_hex"])
    signature_check = vector["check"] in SIGNATURE_CHECKS
    assert vector["error"] == ("SignatureError" if signature_check else "DecryptionError")
    assert signature_check <= ("writers" in vector)  # a signature check needs a trust store
    writers = _writers(vector["writers"]) if "writers" in vector else None
    with pytest.raises(DecryptionError) as info:
        decrypt(blob, vector["path"], KEYS[vector["key"]], writers=writers)
    assert type(info.value) is ERRORS[vector["error"]]
    assert isinstance(info.value, DecryptionError)  # SignatureError is one too
    assert info.value.message == vector["message"]
    assert vector["match"] in vector["message"]


@pytest.mark.parametrize("vector", [v for v in NEGATIVE["vectors"]
                                    if v["check"] in SIGNATURE_CHECKS], ids=lambda v: v["name"])
def test_signature_vector_without_a_trust_store_never_raises_signature_error(vector):
    # A reader that requires no signature does not look at the block: the envelope opens
    # (or fails a later check, for a change the AEAD covers too), never as SignatureError.
    blob = bytes.fromhex(vector["envelope_hex"])
    try:
        plaintext = decrypt(blob, vector["path"], KEYS[vector["key"]])
    except DecryptionError as exc:
        assert type(exc) is DecryptionError, exc.message
    else:
        assert plaintext.hex() == NEGATIVE["base"]["plaintext_hex"]


def test_signed_negative_base_is_the_reference_writers_envelope():
    base = NEGATIVE["base"]
    blob, unsigned = bytes.fromhex(base["signed_envelope_hex"]), bytes.fromhex(base["envelope_hex"])
    # The same header but for flags bit 0, set before sealing (the header is the AD).
    h = len(Envelope.parse(unsigned).header())
    assert (unsigned[5], blob[5]) == (0x00, 0x01)
    assert blob[:5] + blob[6:h] == unsigned[:5] + unsigned[6:h]
    assert len(blob) == len(unsigned) + 80
    writers = _writers([base["signed_by"]])
    assert decrypt(blob, base["path"], KEYS[base["key"]], writers=writers).hex() == (
        base["plaintext_hex"])


@pytest.mark.parametrize("vector", [v for v in NEGATIVE["vectors"] if v["check"] in PARSER_RULES],
                         ids=lambda v: v["name"])
def test_parser_rule_vectors_fail_in_the_parser(vector):
    with pytest.raises(MalformedEnvelope) as info:
        Envelope.parse(bytes.fromhex(vector["envelope_hex"]))
    assert "malformed envelope: " + info.value.message == vector["message"]


@pytest.mark.parametrize("vector", [v for v in NEGATIVE["vectors"]
                                    if v["check"] not in PARSER_RULES], ids=lambda v: v["name"])
def test_decryption_check_vectors_parse(vector):
    # The envelope is well formed: only the decryption check under test refuses it.
    Envelope.parse(bytes.fromhex(vector["envelope_hex"]))


def test_negative_base_is_a_valid_envelope():
    base = NEGATIVE["base"]
    blob = bytes.fromhex(base["envelope_hex"])
    assert decrypt(blob, base["path"], KEYS[base["key"]]).hex() == base["plaintext_hex"]


KINDS = {"public": (PublicKey, "pub"), "secret": (SecretKey, "key"),
         "public signing": (SigningPublicKey, "sigpub"), "secret signing": (SigningKey, "sigkey")}


def _load_key(kind, text, source=None):
    cls = KINDS[kind][0]
    return cls.from_text(text) if source is None else cls.from_text(text, source)


def test_key_text_vectors_cover_every_kind():
    assert {v["kind"] for v in KEY_TEXT["refused"]} == set(KINDS)
    assert {v["kind"] for v in KEY_TEXT["accepted"]} == set(KINDS)


@pytest.mark.parametrize("vector", KEY_TEXT["refused"], ids=lambda v: v["name"])
def test_key_text_vector_is_refused_with_recorded_error(vector):
    assert vector["error"] == "KeyFileError"
    with pytest.raises(KeyFileError) as info:
        _load_key(vector["kind"], vector["text"])
    assert info.value.message == vector["message"]
    assert vector["match"] in vector["message"]


@pytest.mark.parametrize("vector", KEY_TEXT["refused"], ids=lambda v: v["name"])
def test_key_text_vector_is_refused_from_a_key_file(tmp_path, vector):
    cls, suffix = KINDS[vector["kind"]]
    path = tmp_path / f"k.{suffix}"
    path.write_bytes(vector["text"].encode("utf-8"))
    path.chmod(0o600)
    with pytest.raises(KeyFileError) as info:
        cls.load(path)
    assert info.value.message == vector["message"].replace(f"{vector['kind']} key:", f"{path}:", 1)


@pytest.mark.parametrize("vector", KEY_TEXT["accepted"], ids=lambda v: v["name"])
def test_key_text_accepted_spellings(vector):
    assert _load_key(vector["kind"], vector["text"]).key_id == vector["key_id"]

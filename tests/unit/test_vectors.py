"""Vectors in tests/vectors/: known answers decrypt, negative vectors fail as recorded."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from vaultkey.crypto import SecretKey, decrypt
from vaultkey.envelope import Envelope
from vaultkey.errors import DecryptionError, KeyFileError, MalformedEnvelope
from vaultkey.keys import PublicKey

ROOT = Path(__file__).resolve().parents[2]
DATA = json.loads((ROOT / "tests/vectors/envelope_v1.json").read_text(encoding="utf-8"))
KEYS = {name: SecretKey.from_text(k["secret"]) for name, k in DATA["keys"].items()}
NEGATIVE = json.loads((ROOT / "tests/vectors/envelope_v1_negative.json").read_text("utf-8"))
KEY_TEXT = json.loads((ROOT / "tests/vectors/key_text_v1_negative.json").read_text("utf-8"))

# docs/FORMAT.md names every rule; each must have at least one negative vector.
PARSER_RULES = {"magic", "version", "flags", "path_len", "path_utf8", "path_rules",
                "stanza_count", "distinct_kids", "ct_len", "length", "trailing"}
DECRYPTION_CHECKS = {"requested_path", "path_binding", "stanza", "unwrap", "commitment", "aead"}
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
    assert vector["error"] == "DecryptionError"
    with pytest.raises(DecryptionError) as info:
        decrypt(blob, vector["path"], KEYS[vector["key"]])
    assert type(info.value) is DecryptionError
    assert info.value.message == vector["message"]
    assert vector["match"] in vector["message"]


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


def _load_key(kind, text, source=None):
    cls = PublicKey if kind == "public" else SecretKey
    return cls.from_text(text) if source is None else cls.from_text(text, source)


@pytest.mark.parametrize("vector", KEY_TEXT["refused"], ids=lambda v: v["name"])
def test_key_text_vector_is_refused_with_recorded_error(vector):
    assert vector["error"] == "KeyFileError"
    with pytest.raises(KeyFileError) as info:
        _load_key(vector["kind"], vector["text"])
    assert info.value.message == vector["message"]
    assert vector["match"] in vector["message"]


@pytest.mark.parametrize("vector", KEY_TEXT["refused"], ids=lambda v: v["name"])
def test_key_text_vector_is_refused_from_a_key_file(tmp_path, vector):
    path = tmp_path / ("k.pub" if vector["kind"] == "public" else "k.key")
    path.write_bytes(vector["text"].encode("utf-8"))
    path.chmod(0o600)
    cls = PublicKey if vector["kind"] == "public" else SecretKey
    with pytest.raises(KeyFileError) as info:
        cls.load(path)
    assert info.value.message == vector["message"].replace(f"{vector['kind']} key:", f"{path}:", 1)


@pytest.mark.parametrize("vector", KEY_TEXT["accepted"], ids=lambda v: v["name"])
def test_key_text_accepted_spellings(vector):
    assert _load_key(vector["kind"], vector["text"]).key_id == vector["key_id"]

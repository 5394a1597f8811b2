"""Known-answer vectors in tests/vectors/ decrypt to the recorded plaintext."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from vaultkey.crypto import SecretKey, decrypt
from vaultkey.envelope import Envelope
from vaultkey.errors import DecryptionError

ROOT = Path(__file__).resolve().parents[2]
DATA = json.loads((ROOT / "tests/vectors/envelope_v1.json").read_text(encoding="utf-8"))
KEYS = {name: SecretKey.from_text(k["secret"]) for name, k in DATA["keys"].items()}


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


def test_generator_is_deterministic_and_file_is_current():
    spec = importlib.util.spec_from_file_location("gen_vectors", ROOT / "scripts/gen_vectors.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.render() == (ROOT / "tests/vectors/envelope_v1.json").read_text(encoding="utf-8")

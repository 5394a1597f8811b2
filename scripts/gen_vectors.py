#!/usr/bin/env python3
"""Regenerate the test vectors in tests/vectors/ deterministically.

* ``envelope_v1.json``: known-answer vectors that decrypt (some signed by a writer);
* ``envelope_v1_negative.json``: one or more envelopes per parser rule and per
  decryption check of docs/FORMAT.md (signature checks included), each with the
  error it must raise;
* ``key_text_v1_negative.json``: key texts breaking each key-text rule, plus
  accepted spellings (whitespace handling), for encryption and signing keys.

Every input is derived from a fixed label with SHA-256 (docs/FORMAT.md section 8
lists the labels), so the output never changes. Each negative case's error is
checked here against the reference implementation; the tests re-run the generator,
compare, and run every vector.

    python scripts/gen_vectors.py            # rewrite the files
    python scripts/gen_vectors.py --check    # exit 1 if a file is stale
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.bindings as sodium

from vaultkey.crypto import SecretKey, _derive, _encrypt_from_parts, decrypt
from vaultkey.envelope import Envelope
from vaultkey.errors import DecryptionError, KeyFileError, SignatureError
from vaultkey.keys import PublicKey, SigningPublicKey
from vaultkey.signatures import Writers
from vaultkey.signkey import SigningKey

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors"
OUT = VECTORS / "envelope_v1.json"
OUT_NEGATIVE = VECTORS / "envelope_v1_negative.json"
OUT_KEY_TEXT = VECTORS / "key_text_v1_negative.json"


def _bytes(label: str, n: int = 32) -> bytes:
    return hashlib.sha256(f"vaultkey test vector: {label}".encode()).digest()[:n]


@functools.cache
def _keys() -> dict[str, SecretKey]:
    return {n: SecretKey(_bytes(f"secret key {n}")) for n in ("alice", "bob", "carol", "mallory")}


@functools.cache
def _signing_keys() -> dict[str, SigningKey]:
    """Writers' Ed25519 keys (the seed is the label's bytes); mallory's is trusted nowhere."""
    return {n: SigningKey(_bytes(f"signing key {n}")) for n in ("release", "ops", "mallory")}


def _writers(names: list[str] | None) -> Writers | None:
    """A reader's trust store for one path: None means no signature is required."""
    if names is None:
        return None
    return Writers.of([(n, _signing_keys()[n].public) for n in names])


# 2026-01-01T00:00:00Z in microseconds: a path's first value takes the writer's clock.
_FIRST_COUNTER = 1_767_225_600_000_000

CASES: list[dict[str, Any]] = [
    {"name": "one recipient, short text", "path": "/app/db/password",
     "plaintext": b"correct horse battery staple", "recipients": ["alice"], "counter": 0},
    {"name": "one recipient, empty value", "path": "/app/empty",
     "plaintext": b"", "recipients": ["alice"], "counter": 0},
    {"name": "two recipients, trailing newline kept", "path": "/shared/config.toml",
     "plaintext": b"[db]\nhost = \"db.internal\"\n", "recipients": ["alice", "bob"], "counter": 7},
    {"name": "three recipients, binary value, non-ASCII path", "path": "/équipe/clé",
     "plaintext": bytes(range(256)), "recipients": ["alice", "bob", "carol"], "counter": 2**40},
    {"name": "one recipient, signed by release", "path": "/app/release/token",
     "plaintext": b"signed by the release writer", "recipients": ["alice"],
     "counter": _FIRST_COUNTER, "signer": "release"},
    {"name": "two recipients, signed by ops", "path": "/ops/deploy/key",
     "plaintext": b"deploy-key: 0123456789abcdef\n", "recipients": ["alice", "bob"],
     "counter": _FIRST_COUNTER + 1, "signer": "ops"},
]


def build() -> dict[str, object]:
    keys, signing = _keys(), _signing_keys()
    vectors = []
    for case in CASES:
        recips = [keys[n] for n in case["recipients"]]
        signer = case.get("signer")
        blob = _encrypt_from_parts(
            case["plaintext"],
            case["path"],
            [k.public for k in recips],
            data_key=_bytes(f"data key {case['name']}"),
            nonce=_bytes(f"nonce {case['name']}", 24),
            ephemeral_secrets=[_bytes(f"ephemeral {case['name']} {i}") for i in range(len(recips))],
            counter=case["counter"],
            signer=None if signer is None else signing[signer],
        )
        vector = {
            "name": case["name"],
            "path": case["path"],
            "counter": case["counter"],
            "recipients": case["recipients"],
            "plaintext_hex": case["plaintext"].hex(),
            "envelope_hex": blob.hex(),
        }
        if signer is not None:
            _check_signed(blob, case, signer)
            vector |= {"signer": signer, "signer_public": signing[signer].public.to_text(),
                       "signer_key_id": signing[signer].key_id, "writers": [signer]}
        vectors.append(vector)
    return {
        "format": "vaultkey envelope v1",
        "generator": "scripts/gen_vectors.py",
        "keys": {n: {"secret": k.to_text(), "public": k.public.to_text(), "key_id": k.key_id}
                 for n, k in keys.items()},
        "non_recipient": "mallory",
        "signing_keys": {n: {"secret": k.to_text(), "public": k.public.to_text(),
                             "key_id": k.key_id} for n, k in signing.items()},
        "untrusted_signer": "mallory",
        "vectors": vectors,
    }


def _check_signed(blob: bytes, case: dict[str, Any], signer: str) -> None:
    """A signed vector opens for a reader trusting its signer, and only for one."""
    for name in case["recipients"]:
        reader = _keys()[name]
        assert decrypt(blob, case["path"], reader, writers=_writers([signer])) == case["plaintext"]
        try:
            decrypt(blob, case["path"], reader, writers=_writers(["mallory"]))
        except SignatureError:
            continue
        raise AssertionError(f"{case['name']}: opened for a reader trusting only mallory")


# --- negative envelopes -------------------------------------------------------------------
# One base value (alice's key, BASE_PATH, counter 0); each case changes one thing.

BASE_PATH = "/neg/value"
BASE_PLAINTEXT = b"negative vector plaintext"


@functools.cache
def _base() -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """(stanza, commitment, nonce, payload key, reference envelope) of the base value."""
    data_key, nonce = _bytes("negative data key"), _bytes("negative nonce", 24)
    blob = _encrypt_from_parts(
        BASE_PLAINTEXT, BASE_PATH, [_keys()["alice"].public], data_key=data_key, nonce=nonce,
        ephemeral_secrets=[_bytes("negative ephemeral alice")],
    )
    env = Envelope.parse(blob)
    payload_key, _ = _derive(data_key)
    return env.stanzas[0].kid + env.stanzas[0].wrapped, env.commitment, nonce, payload_key, blob


def _header(path: bytes = BASE_PATH.encode(), *, version: int = 1, flags: int = 0,
            counter: int = 0, stanzas: int = 1, n: int | None = None,
            commitment: bytes | None = None) -> bytes:
    """Header bytes written field by field from FORMAT.md section 4 (not via Envelope)."""
    stanza, base_commitment, nonce, _, _ = _base()
    return (b"VKEY" + bytes([version, flags]) + len(path).to_bytes(2, "big") + path
            + counter.to_bytes(8, "big") + bytes([stanzas if n is None else n])
            + stanza * stanzas + (base_commitment if commitment is None else commitment) + nonce)


def _env(path: str | bytes = BASE_PATH, **fields: Any) -> bytes:
    """An envelope whose AEAD is computed over its own (changed) header."""
    raw = path.encode("utf-8") if isinstance(path, str) else path
    header = _header(raw, **fields)
    _, _, nonce, payload_key, _ = _base()
    ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(BASE_PLAINTEXT, header, nonce,
                                                           payload_key)
    return header + len(ct).to_bytes(4, "big") + ct


def _flip(blob: bytes, pos: int) -> bytes:
    out = bytearray(blob)
    out[pos] ^= 0x01
    return bytes(out)


_P = len(BASE_PATH)  # offsets below: counter at 8+P, stanza at 17+P, header ends at 169+P
_H = 73 + _P + 96


def _ct_len(blob: bytes, value: int, keep: int) -> bytes:
    """The base envelope with ct_len set to *value* and *keep* ciphertext bytes."""
    return blob[:_H] + value.to_bytes(4, "big") + blob[_H + 4 : _H + 4 + keep]


# (name, check, make envelope, path asked for, reader, stable part of the message)
Case = tuple[str, str, Callable[[], bytes], str, str, str]
_BAD = "envelope path is not a valid key path"
NEGATIVE: list[Case] = [
    ("empty input", "length", lambda: b"", BASE_PATH, "alice", "truncated"),
    ("magic cut short", "length", lambda: b"VKE", BASE_PATH, "alice", "truncated"),
    ("magic only", "length", lambda: b"VKEY", BASE_PATH, "alice", "truncated"),
    ("bad magic", "magic", lambda: b"VKEZ" + _env()[4:], BASE_PATH, "alice", "bad magic"),
    ("bad magic, 2 bytes", "magic", lambda: b"XK", BASE_PATH, "alice", "bad magic"),
    ("version 0", "version", lambda: _env(version=0), BASE_PATH, "alice",
     "unsupported envelope version 0"),
    ("version 2", "version", lambda: _env(version=2), BASE_PATH, "alice",
     "unsupported envelope version 2"),
    ("version 2, nothing after it", "version", lambda: b"VKEY\x02", BASE_PATH, "alice",
     "unsupported envelope version 2"),
    ("version 2, short", "version", lambda: b"VKEY\x02\x00\x00", BASE_PATH, "alice",
     "unsupported envelope version 2"),
    ("flag bit 1", "flags", lambda: _env(flags=0x02), BASE_PATH, "alice", "unknown flag bits"),
    ("flag bit 7 with bit 0", "flags", lambda: _env(flags=0x81), BASE_PATH, "alice",
     "unknown flag bits"),
    ("path_len 1025", "path_len", lambda: _env("/" + "a" * 1024), BASE_PATH, "alice",
     "path too long"),
    ("path cut short", "length", lambda: _env()[:12], BASE_PATH, "alice", "truncated"),
    ("path byte 0xff", "path_utf8", lambda: _env(b"/neg/\xff"), BASE_PATH, "alice", "not UTF-8"),
    ("path with encoded surrogate", "path_utf8", lambda: _env(b"/neg/\xed\xb3\x80"), BASE_PATH,
     "alice", "not UTF-8"),
    ("path with overlong '/'", "path_utf8", lambda: _env(b"/neg\xc0\xafvalue"), BASE_PATH,
     "alice", "not UTF-8"),
    ("counter cut short", "length", lambda: _env()[: 8 + _P + 5], BASE_PATH, "alice",
     "truncated"),
    ("no stanza (n = 0)", "stanza_count", lambda: _env(stanzas=0), BASE_PATH, "alice",
     "1 to 255 recipients"),
    ("n = 2, one stanza present", "length", lambda: _env(n=2), BASE_PATH, "alice", "truncated"),
    ("duplicate kid", "distinct_kids", lambda: _env(stanzas=2), BASE_PATH, "alice",
     "duplicate recipient"),
    ("ct_len 0", "ct_len", lambda: _ct_len(_env(), 0, 0), BASE_PATH, "alice",
     "shorter than its tag"),
    ("ct_len 15", "ct_len", lambda: _ct_len(_env(), 15, 15), BASE_PATH, "alice",
     "shorter than its tag"),
    ("ct_len past the end", "length", lambda: _ct_len(_env(), 42, 41), BASE_PATH, "alice",
     "truncated"),
    ("last byte missing", "length", lambda: _env()[:-1], BASE_PATH, "alice", "truncated"),
    ("one trailing byte", "trailing", lambda: _env() + b"\x00", BASE_PATH, "alice",
     "trailing bytes"),
    ("flag bit 0, no signature block", "length", lambda: _env(flags=0x01), BASE_PATH, "alice",
     "truncated"),
    ("signature block 79 bytes", "length", lambda: _env(flags=0x01) + bytes(79), BASE_PATH,
     "alice", "truncated"),
    ("signature block then a trailing byte", "trailing", lambda: _env(flags=0x01) + bytes(81),
     BASE_PATH, "alice", "trailing bytes"),
    ("path asked for lone surrogate (stored '/neg/value?')", "requested_path",
     lambda: _env("/neg/value?"), "/neg/value\udc80", "alice", "invalid path"),
    ("moved to another path", "path_binding", _env, "/neg/other", "alice",
     "bound to another path"),
    ("moved, paths differ only in case", "path_binding", _env, "/neg/Value", "alice",
     "bound to another path"),
    ("NFC stored, NFD asked (no normalisation)", "path_binding", lambda: _env("/neg/caf\u00e9"),
     "/neg/cafe\u0301", "alice", "bound to another path"),
    ("non-recipient", "stanza", _env, BASE_PATH, "mallory", "no stanza for key vk1_"),
    ("wrapped key corrupted", "unwrap", lambda: _flip(_env(), 17 + _P + 16 + 40), BASE_PATH,
     "alice", "integrity check failed"),
    ("commitment changed, AEAD valid", "commitment",
     lambda: _env(commitment=_flip(_base()[1], 0)), BASE_PATH, "alice", "integrity check failed"),
    ("ciphertext bit flipped", "aead", lambda: _flip(_env(), _H + 4), BASE_PATH, "alice",
     "integrity check failed"),
    ("tag bit flipped", "aead", lambda: _flip(_env(), -1), BASE_PATH, "alice",
     "integrity check failed"),
    ("counter changed after sealing", "aead", lambda: _flip(_env(), 8 + _P + 7), BASE_PATH,
     "alice", "integrity check failed"),
    ("nonce changed after sealing", "aead", lambda: _flip(_env(), _H - 1), BASE_PATH, "alice",
     "integrity check failed"),
    ("stored path rewritten after sealing", "aead",
     lambda: _env().replace(b"/neg/value", b"/neg/other"), "/neg/other", "alice",
     "integrity check failed"),
    ("signature flag added after sealing", "aead",
     lambda: _env()[:5] + b"\x01" + _env()[6:] + bytes(80), BASE_PATH, "alice",
     "integrity check failed"),
]

# The section-3 rules, once on the stored path (asked for as stored) and once on the
# path asked for (the envelope itself is the valid base).
_STORED_PATHS = [("empty", ""), ("relative", "neg/value"), ("'//'", "/neg//value"),
                 ("'.'", "/neg/./value"), ("'..'", "/neg/../value"), ("'+'", "/neg/+"),
                 ("ends in '/'", "/neg/"), ("'/'", "/"), ("NUL", "/neg/\x00"),
                 ("U+001F", "/neg/\x1f"), ("DEL", "/neg/\x7f"), ("U+0085", "/neg/\x85"),
                 ("backslash", "/neg\\value"), ("'%'", "/neg/%2e%2e")]
_ASKED_PATHS = [("empty", ""), ("relative", "neg/value"), ("ends in '/'", "/neg/value/"),
                ("'//'", "/neg//value"), ("'.'", "/neg/./value"), ("'..'", "/neg/x/../value"),
                ("'+'", "/neg/+"), ("NUL", "/neg/value\x00"), ("U+009F", "/neg/value\x9f"),
                ("backslash", "/neg\\value"), ("'%'", "/neg/%76alue"),
                ("1025 bytes", "/" + "a" * 1024)]
NEGATIVE += [(f"stored path {label}", "path_rules", functools.partial(_env, path), path,
              "alice", _BAD) for label, path in _STORED_PATHS]
NEGATIVE += [(f"path asked for {label}", "requested_path", _env, path, "alice", "invalid path")
             for label, path in _ASKED_PATHS]


# --- signatures (docs/FORMAT.md section 6, steps 4 and 5) ------------------------------------
# The base value sealed with flags bit 0 set, then signed by a writer (section 5, step 8):
# the signature covers every byte before the signature block.

_SIG_BLOCK = 16 + 64  # signer_kid, Ed25519 signature


def _signed(blob: bytes, signer: str = "release") -> bytes:
    """*blob* (sealed with flags bit 0 set) with *signer*'s signature block appended."""
    key = _signing_keys()[signer]
    return blob + key.public.kid + key.sign(blob)


def _signed_env(path: str = BASE_PATH, signer: str = "release") -> bytes:
    return _signed(_env(path, flags=0x01), signer)


def _kid_replaced(blob: bytes, signer: str) -> bytes:
    """*blob* with its signer_kid replaced by *signer*'s (the signature left as it is)."""
    return blob[:-_SIG_BLOCK] + _signing_keys()[signer].public.kid + blob[-64:]


# (name, check, make envelope, reader, trusted writers, stable part of the message); the
# path asked for is BASE_PATH. The reader requires a signature by one of the writers.
SignedCase = tuple[str, str, Callable[[], bytes], str, list[str], str]
_NOT_SIGNED = "not signed, but this path requires a writer signature"
_UNTRUSTED = "which is not a trusted writer for this path"
_FORGED = "the writer signature does not verify"
SIGNED_NEGATIVE: list[SignedCase] = [
    ("unsigned, signature required", "signer", _env, "alice", ["release"], _NOT_SIGNED),
    ("unsigned, signature required, read by a non-recipient", "signer", _env, "mallory",
     ["release"], _NOT_SIGNED),
    ("signed by an untrusted writer (mallory)", "signer",
     lambda: _signed_env(signer="mallory"), "alice", ["release"], _UNTRUSTED),
    ("signed by release, only ops trusted", "signer", _signed_env, "alice", ["ops"], _UNTRUSTED),
    ("signature bit flipped (R)", "signature", lambda: _flip(_signed_env(), -64), "alice",
     ["release"], _FORGED),
    ("signature bit flipped (S)", "signature", lambda: _flip(_signed_env(), -32), "alice",
     ["release"], _FORGED),
    ("signature block of another path's signed envelope", "signature",
     lambda: _signed_env()[:-_SIG_BLOCK] + _signed_env("/neg/other")[-_SIG_BLOCK:], "alice",
     ["release"], _FORGED),
    ("signed by mallory, signer_kid rewritten to release's", "signature",
     lambda: _kid_replaced(_signed_env(signer="mallory"), "release"), "alice", ["release"],
     _FORGED),
    ("ciphertext bit flipped after signing", "signature", lambda: _flip(_signed_env(), _H + 4),
     "alice", ["release"], _FORGED),
    ("counter changed after signing", "signature", lambda: _flip(_signed_env(), 8 + _P + 7),
     "alice", ["release"], _FORGED),
    ("signed, last signature byte missing", "length", lambda: _signed_env()[:-1], "alice",
     ["release"], "truncated"),
    ("signed, signer_kid only", "length", lambda: _signed_env()[:-64], "alice", ["release"],
     "truncated"),
    ("signed, signer_kid cut short", "length", lambda: _signed_env()[:-70], "alice",
     ["release"], "truncated"),
    ("signed by release, read by a non-recipient", "stanza", _signed_env, "mallory",
     ["release"], "no stanza for key vk1_"),
]
SIGNATURE_CHECKS = frozenset({"signer", "signature"})


def _expected_error(blob: bytes, path: str, reader: str, match: str, check: str,
                    writers: list[str] | None = None) -> tuple[str, str]:
    """The reference implementation's error class and message; fails loudly if either is
    not the expected one (SignatureError for the signature checks, else DecryptionError)."""
    expected = SignatureError if check in SIGNATURE_CHECKS else DecryptionError
    try:
        decrypt(blob, path, _keys()[reader], writers=_writers(writers))
    except DecryptionError as exc:
        if type(exc) is not expected or match not in exc.message:
            raise AssertionError(f"unexpected {type(exc).__name__}: {exc.message}") from None
        return expected.__name__, exc.message
    raise AssertionError(f"decrypted although it must fail ({path!r})")


def build_negative() -> dict[str, object]:
    stanza, _, _, _, reference = _base()
    # Why: proves the hand-written header above is byte-for-byte the reference writer's.
    assert _env() == reference, "negative base differs from the reference envelope"
    assert decrypt(reference, BASE_PATH, _keys()["alice"]) == BASE_PLAINTEXT
    # Why: and the hand-made signature block is the reference writer's too.
    signed = _encrypt_from_parts(
        BASE_PLAINTEXT, BASE_PATH, [_keys()["alice"].public], data_key=_bytes("negative data key"),
        nonce=_bytes("negative nonce", 24), ephemeral_secrets=[_bytes("negative ephemeral alice")],
        signer=_signing_keys()["release"],
    )
    assert _signed_env() == signed, "signed negative base differs from the reference envelope"
    assert decrypt(signed, BASE_PATH, _keys()["alice"], writers=_writers(["release"])) == (
        BASE_PLAINTEXT)
    cases: list[tuple[str, str, Callable[[], bytes], str, str, list[str] | None, str]] = [
        (n, c, make, path, reader, None, m) for n, c, make, path, reader, m in NEGATIVE]
    cases += [(n, c, make, BASE_PATH, reader, writers, m)
              for n, c, make, reader, writers, m in SIGNED_NEGATIVE]
    vectors = []
    for name, check, make, path, reader, writers, match in cases:
        blob = make()
        error, message = _expected_error(blob, path, reader, match, check, writers)
        vector: dict[str, object] = {"name": name, "check": check, "envelope_hex": blob.hex(),
                                     "path": path, "key": reader}
        if writers is not None:
            vector["writers"] = writers
        vectors.append(vector | {"error": error, "match": match, "message": message})
    return {
        "format": "vaultkey envelope v1, negative vectors",
        "generator": "scripts/gen_vectors.py",
        "keys": "tests/vectors/envelope_v1.json",
        "base": {"path": BASE_PATH, "plaintext_hex": BASE_PLAINTEXT.hex(), "key": "alice",
                 "counter": 0, "stanza_hex": stanza.hex(), "envelope_hex": reference.hex(),
                 "signed_by": "release", "signed_envelope_hex": signed.hex()},
        "vectors": vectors,
    }


# --- key text -----------------------------------------------------------------------------

def _put(text: str, ch: str, at: int = 19) -> str:
    return text[:at] + ch + text[at + 1 :]


@functools.cache
def _release() -> tuple[str, str]:
    """Writer release's public and secret signing key texts."""
    key = _signing_keys()["release"]
    return key.public.to_text(), key.to_text()


# Built from alice's key texts, or release's signing key texts (kinds "public signing" and
# "secret signing"): (name, check, kind, make(pub, sec), stable part of message)
KeyCase = tuple[str, str, str, Callable[[str, str], str], str]
_NOT_B64 = "not a base64url character"
KEY_REFUSED: list[KeyCase] = [
    ("empty text", "key_lines", "public", lambda p, s: "", "no key found"),
    ("only comments and blank lines", "key_lines", "public", lambda p, s: "# key\n\n \t\n#x\n",
     "no key found"),
    ("form feed is not a line break", "key_lines", "public", lambda p, s: "# c\x0c" + p,
     "no key found"),
    ("two key lines", "key_lines", "public", lambda p, s: f"{p}\n{p}\n", "more than one key line"),
    ("no tag", "key_tag", "public", lambda p, s: p[7:], "not a vaultkey key"),
    ("no '_' after the tag", "key_tag", "public", lambda p, s: "vkpub1" + p[7:],
     "not a vaultkey key"),
    ("unknown tag vkpub2", "key_tag", "public", lambda p, s: "vkpub2_" + p[7:],
     "not a vaultkey key"),
    ("upper-case tag", "key_tag", "public", lambda p, s: "VKPUB1_" + p[7:], "not a vaultkey key"),
    ("byte-order mark", "key_tag", "public", lambda p, s: "\ufeff" + p, "not a vaultkey key"),
    ("leading no-break space", "key_tag", "public", lambda p, s: "\u00a0" + p,
     "not a vaultkey key"),
    ("secret key where a public key is needed", "key_type", "public", lambda p, s: s,
     "this is a secret key, but a public key is needed"),
    ("public key where a secret key is needed", "key_type", "secret", lambda p, s: p,
     "this is a public key, but a secret key is needed"),
    ("public signing key where a public key is needed", "key_type", "public",
     lambda p, s: _release()[0], "this is a public signing key, but a public key is needed"),
    ("public key where a public signing key is needed", "key_type", "public signing",
     lambda p, s: p, "this is a public key, but a public signing key is needed"),
    ("secret signing key where a secret key is needed", "key_type", "secret",
     lambda p, s: _release()[1], "this is a secret signing key, but a secret key is needed"),
    ("secret key where a secret signing key is needed", "key_type", "secret signing",
     lambda p, s: s, "this is a secret key, but a secret signing key is needed"),
    ("public signing key where a secret signing key is needed", "key_type", "secret signing",
     lambda p, s: _release()[0],
     "this is a public signing key, but a secret signing key is needed"),
    ("unknown tag vksigpub2", "key_tag", "public signing", lambda p, s: "vksigpub2_" + p[7:],
     "not a vaultkey key (expected text starting with 'vksigpub1_')"),
    ("'=' appended", "key_padding", "public", lambda p, s: p + "=", "padding is not allowed"),
    ("'==' appended", "key_padding", "public", lambda p, s: p + "==", "padding is not allowed"),
    ("'=' instead of the last character", "key_padding", "public", lambda p, s: p[:-1] + "=",
     "padding is not allowed"),
    ("'+' (standard base64)", "key_alphabet", "public", lambda p, s: _put(p, "+"), _NOT_B64),
    ("'/' (standard base64)", "key_alphabet", "public", lambda p, s: _put(p, "/"), _NOT_B64),
    ("inner space", "key_alphabet", "public", lambda p, s: _put(p, " "), _NOT_B64),
    ("inner tab", "key_alphabet", "public", lambda p, s: _put(p, "\t"), _NOT_B64),
    ("'!'", "key_alphabet", "public", lambda p, s: _put(p, "!"), _NOT_B64),
    ("'.'", "key_alphabet", "public", lambda p, s: _put(p, "."), _NOT_B64),
    ("non-ASCII letter", "key_alphabet", "public", lambda p, s: _put(p, "é"), _NOT_B64),
    ("fullwidth digit", "key_alphabet", "public", lambda p, s: _put(p, "\uff11"), _NOT_B64),
    ("NUL", "key_alphabet", "public", lambda p, s: _put(p, "\x00"), _NOT_B64),
    ("zero-width space", "key_alphabet", "public", lambda p, s: _put(p, "\u200b", 30), _NOT_B64),
    ("trailing comment", "key_alphabet", "public", lambda p, s: p + " # alice", _NOT_B64),
    ("trailing vertical tab", "key_alphabet", "public", lambda p, s: p + "\x0b", _NOT_B64),
    ("trailing no-break space", "key_alphabet", "public", lambda p, s: p + "\u00a0", _NOT_B64),
    ("secret key with '+'", "key_alphabet", "secret", lambda p, s: _put(s, "+"), _NOT_B64),
    ("empty body", "key_length", "public", lambda p, s: "vkpub1_", "wrong length"),
    ("one character short", "key_length", "public", lambda p, s: p[:-1], "wrong length"),
    ("four characters short", "key_length", "public", lambda p, s: p[:-4], "wrong length"),
    ("four characters too many", "key_length", "public", lambda p, s: p + "AAAA",
     "wrong length"),
    ("last character changed", "key_checksum", "public",
     lambda p, s: p[:-1] + ("A" if p[-1] != "A" else "B"), "checksum mismatch"),
    ("public body under the secret tag", "key_checksum", "secret", lambda p, s: "vksec1_" + p[7:],
     "checksum mismatch"),
    ("public key body under the public signing tag", "key_checksum", "public signing",
     lambda p, s: "vksigpub1_" + p[7:], "checksum mismatch"),
    ("signing key with '/'", "key_alphabet", "secret signing",
     lambda p, s: _put(_release()[1], "/", 22), _NOT_B64),
    ("signing key one character short", "key_length", "public signing",
     lambda p, s: _release()[0][:-1], "wrong length"),
]
# (name, kind, make(pub, sec)): spellings a reader must accept as alice's key (release's for
# the signing kinds).
KEY_ACCEPTED: list[tuple[str, str, Callable[[str, str], str]]] = [
    ("public key alone", "public", lambda p, s: p),
    ("secret key alone", "secret", lambda p, s: s),
    ("key file with comments", "public", lambda p, s: f"# vaultkey public key\n# id: x\n\n{p}\n"),
    ("spaces and tabs around the key", "public", lambda p, s: f" \t{p}\t \n"),
    ("CRLF line ends", "public", lambda p, s: f"# comment\r\n{p}\r\n"),
    ("indented comment", "public", lambda p, s: f"   # comment\n{p}"),
    ("public signing key alone", "public signing", lambda p, s: _release()[0]),
    ("secret signing key file with comments and CRLF", "secret signing",
     lambda p, s: f"# vaultkey secret signing key\r\n{_release()[1]}\r\n"),
]
_KINDS: dict[str, type[PublicKey | SecretKey | SigningPublicKey | SigningKey]] = {
    "public": PublicKey, "secret": SecretKey, "public signing": SigningPublicKey,
    "secret signing": SigningKey}


def _load(kind: str, text: str) -> PublicKey | SecretKey | SigningPublicKey | SigningKey:
    return _KINDS[kind].from_text(text)


def _owner_key_id(kind: str) -> str:
    """The key id an accepted spelling of *kind* must give."""
    return _signing_keys()["release"].key_id if "signing" in kind else _keys()["alice"].key_id


def _key_error(kind: str, text: str, match: str) -> str:
    try:
        _load(kind, text)
    except KeyFileError as exc:
        if match not in exc.message:
            raise AssertionError(f"unexpected message: {exc.message}") from None
        return exc.message
    raise AssertionError(f"key text accepted although it must fail: {text!r}")


def build_key_text() -> dict[str, object]:
    alice = _keys()["alice"]
    pub, sec = alice.public.to_text(), alice.to_text()
    refused = [(n, c, k, make(pub, sec), m) for n, c, k, make, m in KEY_REFUSED]
    accepted = [(n, k, make(pub, sec)) for n, k, make in KEY_ACCEPTED]
    for _, kind, text in accepted:
        assert _load(kind, text).key_id == _owner_key_id(kind), text
    return {
        "format": "vaultkey key text v1, negative and edge cases",
        "generator": "scripts/gen_vectors.py",
        "refused": [{"name": n, "check": c, "kind": k, "text": t, "error": "KeyFileError",
                     "match": m, "message": _key_error(k, t, m)} for n, c, k, t, m in refused],
        "accepted": [{"name": n, "kind": k, "text": t, "key_id": _owner_key_id(k)}
                     for n, k, t in accepted],
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    """Every vector file and its current text (negative files are ASCII, \\u escapes)."""
    return {
        OUT: render(),
        OUT_NEGATIVE: json.dumps(build_negative(), indent=2) + "\n",
        OUT_KEY_TEXT: json.dumps(build_key_text(), indent=2) + "\n",
    }


if __name__ == "__main__":
    files = outputs()
    if "--check" in sys.argv:
        stale = [p for p, t in files.items() if not p.exists() or p.read_text("utf-8") != t]
        sys.exit(1 if stale else 0)
    for out, text in files.items():
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}")

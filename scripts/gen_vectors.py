#!/usr/bin/env python3
"""Regenerate tests/vectors/envelope_v1.json deterministically.

Every input (keys, data key, nonce, ephemeral keys) is derived from a fixed
label with SHA-256, so running this twice gives identical output. The test
suite re-runs the generator and compares, and decrypts every vector.

    python scripts/gen_vectors.py            # rewrite the file
    python scripts/gen_vectors.py --check    # exit 1 if the file is stale
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from vaultkey.crypto import SecretKey, _encrypt_from_parts

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "envelope_v1.json"


def _bytes(label: str, n: int = 32) -> bytes:
    return hashlib.sha256(f"vaultkey test vector: {label}".encode()).digest()[:n]


CASES = [
    {"name": "one recipient, short text", "path": "/app/db/password",
     "plaintext": b"correct horse battery staple", "recipients": ["alice"], "counter": 0},
    {"name": "one recipient, empty value", "path": "/app/empty",
     "plaintext": b"", "recipients": ["alice"], "counter": 0},
    {"name": "two recipients, trailing newline kept", "path": "/shared/config.toml",
     "plaintext": b"[db]\nhost = \"db.internal\"\n", "recipients": ["alice", "bob"], "counter": 7},
    {"name": "three recipients, binary value, non-ASCII path", "path": "/équipe/clé",
     "plaintext": bytes(range(256)), "recipients": ["alice", "bob", "carol"], "counter": 2**40},
]


def build() -> dict[str, object]:
    keys = {n: SecretKey(_bytes(f"secret key {n}")) for n in ("alice", "bob", "carol", "mallory")}
    vectors = []
    for case in CASES:
        recips = [keys[n] for n in case["recipients"]]  # type: ignore[union-attr]
        blob = _encrypt_from_parts(
            case["plaintext"],  # type: ignore[arg-type]
            case["path"],  # type: ignore[arg-type]
            [k.public for k in recips],
            data_key=_bytes(f"data key {case['name']}"),
            nonce=_bytes(f"nonce {case['name']}", 24),
            ephemeral_secrets=[_bytes(f"ephemeral {case['name']} {i}") for i in range(len(recips))],
            counter=case["counter"],  # type: ignore[arg-type]
        )
        vectors.append({
            "name": case["name"],
            "path": case["path"],
            "counter": case["counter"],
            "recipients": case["recipients"],
            "plaintext_hex": case["plaintext"].hex(),  # type: ignore[union-attr]
            "envelope_hex": blob.hex(),
        })
    return {
        "format": "vaultkey envelope v1",
        "generator": "scripts/gen_vectors.py",
        "keys": {n: {"secret": k.to_text(), "public": k.public.to_text(), "key_id": k.key_id}
                 for n, k in keys.items()},
        "non_recipient": "mallory",
        "vectors": vectors,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_text(encoding="utf-8") == text else 1)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")

#!/usr/bin/env python3
"""What writer signatures cost: encrypt and decrypt a 1 KiB value with and without them.

In-process, the library's own code paths (``encrypt(..., signer=)`` and
``decrypt(..., writers=)``: libsodium signs, ``cryptography`` verifies), median of
several rounds of many operations each::

    python scripts/bench_signatures.py [--rounds 5] [--ops 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from vaultkey.crypto import SecretKey, decrypt, encrypt
from vaultkey.signatures import Writers
from vaultkey.signkey import SigningKey


def _per_op(fn: Callable[[], object], ops: int, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(ops):
            fn()
        samples.append((time.perf_counter() - start) / ops)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args()
    reader, writer = SecretKey.generate(), SigningKey.generate()
    writers = Writers.of([("ci", writer.public)])
    value, path = bytes(1024), "/bench/signed/value"
    plain = encrypt(value, path, [reader.public])
    signed = encrypt(value, path, [reader.public], signer=writer)
    rows = [
        ("encrypt, unsigned", lambda: encrypt(value, path, [reader.public])),
        ("encrypt + sign", lambda: encrypt(value, path, [reader.public], signer=writer)),
        ("decrypt, no signature required", lambda: decrypt(plain, path, reader)),
        ("decrypt + verify", lambda: decrypt(signed, path, reader, writers=writers)),
    ]
    for name, fn in rows:
        print(f"{name:<32} {_per_op(fn, args.ops, args.rounds):8.1f} µs")


if __name__ == "__main__":
    main()

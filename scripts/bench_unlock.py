#!/usr/bin/env python3
"""How long a passphrase-protected secret key takes to unlock (docs/FORMAT.md section 2.1).

Runs the real code path (``SecretKey.from_text`` on ``vksecp1_`` text, Argon2id with the
parameters vaultkey writes: 3 passes, 256 MiB) several times and prints the median and the
range, next to an unprotected key for comparison::

    python scripts/bench_unlock.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from vaultkey.crypto import SecretKey


def _times(fn, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    key = SecretKey.generate()
    passphrase = b"correct horse battery staple"
    protected = key.to_file_text(passphrase=passphrase)
    plain = key.to_file_text()
    locked = _times(lambda: SecretKey.from_text(protected, passphrase=passphrase), args.rounds)
    opened = _times(lambda: SecretKey.from_text(plain), args.rounds)
    print(f"unlock a protected key (Argon2id 3 passes, 256 MiB): median "
          f"{statistics.median(locked) * 1000:.0f} ms (min {min(locked) * 1000:.0f}, "
          f"max {max(locked) * 1000:.0f}, {args.rounds} rounds)")
    print(f"read an unprotected key: median {statistics.median(opened) * 1e6:.0f} µs")


if __name__ == "__main__":
    main()

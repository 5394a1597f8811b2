#!/usr/bin/env python3
"""Regenerate the operator console's screenshots (docs/img/console-*.png).

Runs tests/e2e/test_console_browser.py with ``VAULTKEY_SCREENSHOTS`` set: the test signs
in to a real TLS proxy (real etcd) in headless Chromium, and saves a 1280x800 PNG of each
view it checks. Fails if the test fails or a screenshot is missing.

  scripts/screenshots                  # into docs/img/
  scripts/screenshots --out /tmp/shots
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ("signin", "keyspace", "keyspace-details", "problems", "access", "explain",
         "registrations", "tokens", "audit")


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path} is not a PNG")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"),
                        help="where the PNGs go (default: docs/img)")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("console-*.png"):
        old.unlink()
    env = {**os.environ, "VAULTKEY_SCREENSHOTS": str(out)}
    test = ROOT / "tests" / "e2e" / "test_console_browser.py"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(test)], cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        print("the browser test failed; screenshots are incomplete", file=sys.stderr)
        return result.returncode
    missing = [v for v in VIEWS if not (out / f"console-{v}.png").exists()]
    if missing:
        print(f"missing screenshots: {', '.join(missing)}", file=sys.stderr)
        return 1
    for view in VIEWS:
        path = out / f"console-{view}.png"
        width, height = png_size(path)
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
              f"{width}x{height}, {path.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

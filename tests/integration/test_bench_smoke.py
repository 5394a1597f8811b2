"""`scripts/bench --smoke` runs the whole benchmark harness end to end (real etcd, TLS proxy,
wrk, the watch fan-out script, the CLI) and prints a number for every case (a)-(f).

It checks the harness, not the numbers: a smoke run's durations are far too short to mean
anything. wrk is installed by scripts/_bootstrap.sh; this test never skips.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests._helpers.procs import kill_tree, popen

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "BENCHMARKS.md"
NUMBER = re.compile(r"\d+(\.\d+)?")


def _doc_state() -> tuple[bool, float, bytes]:
    if not DOC.exists():
        return False, 0.0, b""
    return True, DOC.stat().st_mtime, DOC.read_bytes()


def _rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split(" | ")]
            for line in text.splitlines() if line.startswith("| ")]


def test_bench_smoke_prints_every_case_with_numbers(tmp_path):
    out_file = tmp_path / "bench.md"
    before = _doc_state()
    # The venv running the tests is the one the benchmark uses (scripts/bench bootstraps it).
    env = {**os.environ, "VAULTKEY_VENV": sys.prefix}
    proc = popen([str(ROOT / "scripts" / "bench"), "--smoke", "--out", str(out_file)],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                 text=True, env=env, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        kill_tree(proc)  # on a timeout: the bench and its etcd, proxy and load processes
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err[-6000:]}"

    rows = _rows(out)
    for letter in "abcdef":
        cases = [r for r in rows if r[0].startswith(f"({letter})")]
        assert cases, f"no row for case ({letter}) in:\n{out}"
        for r in cases:
            assert len(r) == 5, r
            assert "FAILED" not in " ".join(r), r
            assert NUMBER.search(r[2]), f"case {r[0]} has no number: {r}"
    # every wrk case, at both concurrencies, with both sides measured
    for case in ("(a) GET c1", "(a) GET c32", "(a) /healthz c1", "(a) /healthz c32",
                 "(b) PUT c1", "(b) PUT c32"):
        (row,) = [r for r in rows if r[0] == case]
        assert "req/s" in row[2], row
        if "healthz" not in case:
            assert "req/s" in row[3] and NUMBER.fullmatch(row[4]), row
    for name in ("(a) SDK get", "(c) bulk read 500 keys", "(e) CLI get"):
        (row,) = [r for r in rows if r[0] == name]
        assert NUMBER.search(row[3]) and row[4].endswith("x"), row
    (crypt,) = [r for r in rows if r[0] == "(e) CLI get vs crypt"]
    assert crypt[3] == "crypt not installed" or crypt[4].endswith("x"), crypt
    targets = {r[0]: r for r in rows if re.fullmatch(r"P\d", r[0])}
    assert sorted(targets) == [f"P{i}" for i in range(1, 8)], out
    assert all(r[4] in ("met", "MISSED") for r in targets.values()), targets

    written = out_file.read_text()
    assert "## Machine" in written and "## Results" in written and "| (f) ACL" in written
    assert "scripts/bench --smoke --out" in written
    assert _doc_state() == before, "a --smoke run must not write docs/BENCHMARKS.md"

"""``vaultkey coverage PREFIX``: who can decrypt what, checked for CI.

For each key under PREFIX that the token may see, the proxy compares the policy's
reader groups with the keys the envelope is encrypted to (headers only: no key file is
needed) and gives a verdict. The command prints a table (or JSON), ends with a one-line
summary, and exits 16 when any verdict is not ``ok``, so a pipeline can gate on it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import click

from vaultkey._cli.base import ExitWith
from vaultkey._cli.common import OUTPUT, GlobalOptions, cli, emit, visible

EXIT_PROBLEMS = 16
PAGE = 1000
ORDER = ("foreign", "unknown-key", "stale-recipient", "unsigned-where-required",
         "missing-reader", "ok")


def fetch(client: Any, prefix: str) -> dict[str, Any]:
    """Every page of ``GET /v1/coverage/PREFIX`` as one answer."""
    rows: list[dict[str, Any]] = []
    after: str | None = None
    revision = 0
    while True:
        query = {"limit": str(PAGE), **({"after": after} if after else {})}
        page = client.request("GET", f"/v1/coverage{quote(prefix, safe='/')}?"
                              + urlencode(query))
        rows += page["keys"]
        revision = revision or page["revision"]
        after = page.get("next")
        if not after:
            return {"prefix": page["prefix"], "revision": revision, "keys": rows}


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = {v: 0 for v in ORDER}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return {v: n for v, n in counts.items() if n}


def fixes(rows: list[dict[str, Any]]) -> list[str]:
    """The distinct commands that fix every problem, in the order of the problems."""
    seen: dict[str, None] = {}
    for row in rows:
        for problem in row["problems"]:
            if problem.get("fix"):
                seen.setdefault(problem["fix"], None)
    return list(seen)


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'VERDICT':<24} {'REV':>7}  {'PATH':<40} READERS / STANZAS / SIGNER"]
    for row in rows:
        stanzas = ", ".join(
            f"{s['group'] or s['key_id'][:12] + '…'}:{s['role']}" for s in row["stanzas"])
        signer = row["signer"]["name"] or row["signer"]["key_id"] if row["signer"] else "-"
        lines.append(f"{row['verdict']:<24} {row['revision']:>7}  {visible(row['path']):<40} "
                     f"{','.join(row['readers']) or '-'} / {stanzas or '-'} / "
                     f"{visible(signer)}")
        for problem in row["problems"]:
            lines.append(f"{'':<34}- {visible(problem['detail'])}")
    return "\n".join(lines)


@cli.command("coverage", epilog="""\b
Examples:
  vaultkey coverage /payments/                # table and summary; exit 16 on any problem
  vaultkey coverage / -o json                 # everything your token may see, as JSON
  vaultkey coverage /payments/ --fix-hint     # also the rewrap / rotate commands to run
Verdicts, worst first: foreign, unknown-key, stale-recipient, unsigned-where-required,
missing-reader, ok.""")
@click.argument("prefix")
@click.option("--fix-hint", is_flag=True,
              help="Print the commands (rewrap, rotate) that fix each problem.")
@OUTPUT
@click.pass_obj
def coverage_cmd(opts: GlobalOptions, prefix: str, fix_hint: bool, output: str) -> None:
    """Check that every value under PREFIX is encrypted to exactly its readers."""
    with opts.client() as client:
        report = fetch(client, prefix)
    rows = report["keys"]
    counts = summary(rows)
    problems = len(rows) - counts.get("ok", 0)
    line = (f"{len(rows)} keys under {visible(report['prefix'])} at revision "
            f"{report['revision']}: " + (", ".join(f"{n} {v}" for v, n in counts.items())
                                         or "none") + ("" if problems else " (all ok)"))
    if output == "json":
        report["summary"] = counts
        if fix_hint:
            report["fixes"] = fixes(rows)
        emit(report, True, "")
    else:
        text = _table(rows) + "\n" + line
        if fix_hint and problems:
            text += "\n\nto fix:\n" + "\n".join(f"  {visible(f)}" for f in fixes(rows))
        emit(report, False, text)
    if problems:
        raise ExitWith(EXIT_PROBLEMS)


__all__ = ["coverage_cmd", "fetch", "fixes", "summary"]

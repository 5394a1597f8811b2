"""``vaultkey rewrap`` and ``vaultkey rotate``: key lifecycle over a prefix."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vaultkey._cli.common import OUTPUT, GlobalOptions, cli, emit, visible

if TYPE_CHECKING:
    from vaultkey.client._lifecycle import Report

F = TypeVar("F", bound=Callable[..., Any])
_OPTIONS = [
    click.argument("prefix"),
    click.option("--dry-run", is_flag=True, help="Show what would change; write nothing."),
    click.option("--resume", type=int, metavar="REVISION",
                 help="Continue an interrupted run: the start revision it printed."),
    click.option("--sign-unverified", is_flag=True,
                 help="With a signing key, also sign values that carry no signature your "
                 "trust store verifies (check them first: this vouches for them)."),
    OUTPUT,
]


def _options(f: F) -> F:
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def _progress(done: int, total: int, path: str, start: int) -> None:
    """How to resume (first), then a one-line progress bar on stderr, on a terminal only."""
    if sys.stderr is None:
        return
    if done == 0:
        sys.stderr.write(f"{total} values at revision {start}; if this is interrupted, run it "
                         f"again with --resume {start}\n")
        sys.stderr.flush()
        return
    if not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // max(total, 1)
    shown = visible(path)[-40:]
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {shown:<40}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _summary(report: Report) -> str:
    lines = [f"{visible(o.path)}: {o.action}" + (f" {visible(o.detail)}" if o.detail else "")
             for o in report.outcomes if o.action != "current"]
    counts = {a: report.count(a) for a in ("rewrapped", "rotated", "current", "concurrent",
                                            "resumed", "gone", "failed",
                                            f"would-{report.mode}")}
    said = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    lines.append(f"{report.mode} {visible(report.prefix)}: {said or 'no values'} "
                 f"(start revision {report.start_revision}; after an interruption: "
                 f"--resume {report.start_revision})")
    if report.count("concurrent"):
        lines.append("values marked 'concurrent' were written again at every attempt while "
                     "this ran; run it again when their writers are quiet")
    removed = any(o.action in ("rewrapped", "would-rewrap") and "-vk1_" in o.detail
                  for o in report.outcomes)
    if removed:
        lines.append("keys were removed: rewrap keeps each value's data key, so whoever holds a "
                     "removed key and an old revision can still open the new one; if that key "
                     "was compromised, use `vaultkey rotate`")
    return "\n".join(lines)


def _run(opts: GlobalOptions, prefix: str, rotate: bool, dry_run: bool, resume: int | None,
         sign_unverified: bool, output: str) -> Report:
    with opts.client() as client:
        run = client.rotate if rotate else client.rewrap
        report = run(prefix, dry_run=dry_run, resume=resume, progress=_progress,
                     sign_unverified=sign_unverified)
    emit(report.as_json(), output == "json", _summary(report))
    return report


def _exit_if_failed(report: Report) -> None:
    """Exit with the first failed value's exit code (after everything else was done)."""
    failed = [o for o in report.outcomes if o.action == "failed"]
    if failed:
        raise click.exceptions.Exit(failed[0].exit_code or 1)


@cli.command(epilog="""\b
Examples:
  vaultkey rewrap /payments/ --dry-run
  vaultkey rewrap /payments/
  vaultkey rewrap /payments/ --resume 4711     # after an interruption""")
@_options
@click.pass_obj
def rewrap(opts: GlobalOptions, prefix: str, dry_run: bool, resume: int | None,
           sign_unverified: bool, output: str) -> None:
    """Re-wrap every value under PREFIX to its current recipients, keeping each data key.

    For adding a reader or retiring a key that was NOT compromised: each value gets
    one stanza per recipient the policy names now (checked against your trust
    store); the plaintext and its data key stay. You need a key that opens the
    values (and a signing key where the policy requires signatures). Each write is
    a compare-and-swap: a value written meanwhile is skipped and reported, never
    overwritten. Values already wrapped to exactly the current recipients are left
    alone, so running it again finishes an interrupted run. A value that cannot be
    done is reported as failed, the others are done, and the exit code is that
    failure's. For a compromised key use `vaultkey rotate`.
    """
    _exit_if_failed(_run(opts, prefix, False, dry_run, resume, sign_unverified, output))


@cli.command(epilog="""\b
Examples:
  vaultkey rotate /payments/ --dry-run
  vaultkey rotate /payments/""")
@_options
@click.pass_obj
def rotate(opts: GlobalOptions, prefix: str, dry_run: bool, resume: int | None,
           sign_unverified: bool, output: str) -> None:
    """Re-encrypt every value under PREFIX under a fresh data key.

    For removing a member or handling a compromised key: every value is encrypted
    again, to the recipients the policy names now, as a new revision (each a
    compare-and-swap; a value written meanwhile is skipped and reported).

    \b
    Two things rotate cannot do, and you must:
    * old revisions stay in etcd, readable with the old keys, until etcd compacts
      them: compact at the start revision printed (docs/OPERATIONS.md, "Rotating keys");
    * a leaked key means the secrets it could open are leaked: change the real
      secrets (passwords, API keys), not only their encryption.
    """
    report = _run(opts, prefix, True, dry_run, resume, sign_unverified, output)
    last = max((o.revision for o in report.outcomes if o.action == "rotated"), default=0)
    if last and output != "json":
        click.echo(f"next: the old revisions are still in etcd, readable with the old keys, "
                   f"until it is compacted at revision {last} or later, e.g.\n"
                   f"  etcdctl compact {last}\n"
                   "and change any secret a compromised key could read: rotating its "
                   "encryption does not un-leak it.", err=True)
    _exit_if_failed(report)

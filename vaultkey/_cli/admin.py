"""``vaultkey token ...`` (talks to the proxy) and ``vaultkey policy ...`` (local files)."""

from __future__ import annotations

import time
from urllib.parse import quote

import click

from vaultkey._cli.common import OUTPUT, GlobalOptions, cli, emit, visible


@cli.group()
def token() -> None:
    """Manage group tokens (needs the admin token)."""


@token.command("create", epilog="\b\nExamples:\n  export VAULTKEY_TOKEN=$ADMIN_TOKEN\n"
               "  PAYMENTS_TOKEN=$(vaultkey token create --group payments --ttl 24h --name api)")
@click.option("--group", required=True, help="Group from the proxy's policies.")
@click.option("--ttl", help="Lifetime, e.g. 3600, 30m, 24h, 7d (default: no expiry).")
@click.option("--name", default="", help="A label shown by `token list`.")
@OUTPUT
@click.pass_obj
def token_create(opts: GlobalOptions, group: str, ttl: str | None, name: str, output: str) -> None:
    """Create a token for GROUP. Prints only the token (shown once)."""
    with opts.client() as client:
        body = client.request("POST", "/v1/tokens",
                              json={"group": group, "ttl": ttl, "name": name})
    emit(body, output == "json", visible(body["token"]))


def _when(ts: float | None) -> str:
    return "never" if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@token.command("list", epilog="\b\nExamples:\n  vaultkey token list\n"
               "  vaultkey token list -o json | jq '.tokens[] | select(.group==\"payments\")'")
@OUTPUT
@click.pass_obj
def token_list(opts: GlobalOptions, output: str) -> None:
    """List tokens: id, group, name, expiry (never the secret)."""
    with opts.client() as client:
        body = client.request("GET", "/v1/tokens")
    rows = [f"{'ID':16}  {'GROUP':16}  {'EXPIRES':20}  NAME"]
    # Names are free text (any characters) set by whoever created the token.
    rows += [f"{visible(t['id']):16}  {visible(t['group']):16}  {_when(t['expires']):20}  "
             f"{visible(t['name'])}" for t in body["tokens"]]
    emit(body, output == "json", "\n".join(rows))


@token.command("revoke", epilog="\b\nExample:\n  vaultkey token revoke 5f13460aaf6ca411"
               "     # the id from `token list`")
@click.argument("token_id")
@click.pass_obj
def token_revoke(opts: GlobalOptions, token_id: str) -> None:
    """Revoke the token with id TOKEN_ID (takes effect at once)."""
    with opts.client() as client:
        client.request("DELETE", "/v1/tokens/" + quote(token_id, safe=""))
    click.echo(f"revoked {visible(token_id)}", err=True)


@cli.group()
def policy() -> None:
    """Check and explain ACL policy files."""


@policy.command("check", epilog="\b\nExample:\n  vaultkey policy check policies/")
@click.argument("directory", type=click.Path(file_okay=False))
def policy_check(directory: str) -> None:
    """Validate every policy file in DIRECTORY; print each problem as FILE:LINE: MESSAGE."""
    from vaultkey.errors import PolicyError
    from vaultkey.policy.load import check_policy_dir, load_policy_dir

    problems = check_policy_dir(directory)
    for problem in problems:
        click.echo(visible(problem.message), err=True)
    if problems:
        raise PolicyError(f"{len(problems)} problem(s) found", source=directory)
    loaded = load_policy_dir(directory)
    groups = sorted(loaded.policy_set.groups)
    click.echo(visible(f"ok: {len(groups)} group(s): {', '.join(groups)}"))


@policy.command("explain", epilog="\b\nExamples:\n"
                "  vaultkey policy explain --group payments /payments/ledger/q3 write\n"
                "  vaultkey policy explain --group web /services/ list")
@click.option("--group", required=True)
@click.option("--policies", "directory", default="policies", show_default=True,
              envvar="VAULTKEY_POLICIES", type=click.Path(file_okay=False))
@click.argument("path")
@click.argument("capability", type=click.Choice(["read", "list", "write", "delete", "watch"]))
def policy_explain(group: str, directory: str, path: str, capability: str) -> None:
    """Print the decision for GROUP doing CAPABILITY on PATH, and the rule that made it.

    A PATH ending in '/' is a prefix ('list' is always checked on a prefix).
    Exits 0 when allowed, 4 when denied.
    """
    from vaultkey.errors import PermissionDenied
    from vaultkey.paths import validate_key, validate_prefix
    from vaultkey.policy.load import load_policy_dir

    is_prefix = path.endswith("/") or capability == "list"  # the proxy checks list on prefixes
    target = validate_prefix(path) if is_prefix else validate_key(path)
    loaded = load_policy_dir(directory)
    decision = loaded.policy_set.decide(group, target, capability, is_prefix=is_prefix)
    click.echo(visible(decision.explain()))
    keys = loaded.recipients_for(group)
    if keys:  # the group's keyring: every value it may read is sealed to all of these
        state = ("one key" if len(keys) == 1 else
                 f"{len(keys)} keys: a rotation is under way; values are sealed to all of them")
        click.echo(f"keyring of {group} ({state}): " + ", ".join(k.key_id for k in keys))
    signers = loaded.signers.get(group, ())
    if signers:
        click.echo(visible(f"signers of {group}: "
                           + ", ".join(f"{name} ({k.key_id})" for name, k in signers)))
    rule = None if is_prefix else loaded.policy_set.signature_rule(target)
    if rule is not None:
        writers = loaded.writers_for(target)
        names = ", ".join(writers.names()) if writers is not None else ""
        click.echo(visible(f"signature: {rule.describe()}; accepted writers: {names}"))
    if not decision.allowed:
        raise click.exceptions.Exit(PermissionDenied.exit_code)

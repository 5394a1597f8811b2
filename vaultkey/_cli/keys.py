"""``vaultkey keygen``."""

from __future__ import annotations

import click

from vaultkey._cli.common import cli


@cli.command(epilog="\b\nExamples:\n  vaultkey keygen payments\n  vaultkey keygen keys/web --force")
@click.argument("name")
@click.option("--force", is_flag=True, help="Overwrite existing NAME.key / NAME.pub.")
def keygen(name: str, force: bool) -> None:
    """Create an X25519 key pair: NAME.key (secret, mode 0600) and NAME.pub."""
    from vaultkey.crypto import SecretKey, write_keypair

    key_path, pub_path = write_keypair(name, force=force)
    key_id = SecretKey.load(key_path).key_id
    click.echo(f"wrote {key_path} (secret, mode 0600) and {pub_path}", err=True)
    click.echo(f"key id: {key_id}")

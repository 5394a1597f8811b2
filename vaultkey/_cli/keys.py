"""``vaultkey keygen`` and ``vaultkey key passwd``."""

from __future__ import annotations

import os

import click

from vaultkey._cli.common import cli

NEW_PASSPHRASE_ENV = "VAULTKEY_NEW_PASSPHRASE_FILE"  # noqa: S105 - a variable name


def _new_passphrase(what: str) -> bytes:
    """A new passphrase: from $VAULTKEY_NEW_PASSPHRASE_FILE, else typed twice on a terminal."""
    from vaultkey.errors import UsageError
    from vaultkey.keyfile import read_passphrase_file

    path = os.environ.get(NEW_PASSPHRASE_ENV)
    if path:
        return read_passphrase_file(path)
    import getpass
    import sys

    if not (sys.stdin is not None and sys.stdin.isatty()):
        raise UsageError(f"no terminal to ask for the new passphrase of {what}",
                         hint=f"set {NEW_PASSPHRASE_ENV} to a file holding it (mode 0600)")
    first = getpass.getpass(f"new passphrase for {what}: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passphrases differ; nothing was changed")
    return first.encode("utf-8")


@cli.command(epilog="\b\nExamples:\n  vaultkey keygen payments\n  vaultkey keygen keys/web --force"
             "\n  vaultkey keygen ops --passphrase\n  vaultkey keygen --sign release")
@click.argument("name")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.option("--passphrase", is_flag=True,
              help="Protect NAME.key with a passphrase (asked twice, or from "
              "VAULTKEY_NEW_PASSPHRASE_FILE).")
@click.option("--sign", is_flag=True,
              help="Make a writer signing key pair instead (Ed25519): NAME.sigkey (secret, "
              "mode 0600) and NAME.sigpub, which policies and trust stores list.")
def keygen(name: str, force: bool, passphrase: bool, sign: bool) -> None:
    """Create an X25519 key pair: NAME.key (secret, mode 0600) and NAME.pub.

    With --sign, a writer's signing key pair instead: values written with
    VAULTKEY_SIGNING_KEY=NAME.sigkey carry its signature, which the proxy (where a
    policy requires it) and readers (against their own trust store) check.
    """
    from vaultkey.keys import PublicKey, SigningPublicKey
    from vaultkey.signkey import write_keypair, write_signing_keypair

    if sign:
        if passphrase:
            raise click.UsageError("--passphrase protects decryption keys; a signing key "
                                   "file is protected by its mode (0600)")
        key_path, pub_path = write_signing_keypair(name, force=force)
        click.echo(f"wrote {key_path} (secret, mode 0600) and {pub_path}", err=True)
        click.echo(f"signing key id: {SigningPublicKey.load(pub_path).key_id}")
        return
    secret = _new_passphrase(f"{name}.key") if passphrase else None
    key_path, pub_path = write_keypair(name, force=force, passphrase=secret)
    key_id = PublicKey.load(pub_path).key_id
    protected = ", protected by a passphrase" if passphrase else ""
    click.echo(f"wrote {key_path} (secret, mode 0600{protected}) and {pub_path}", err=True)
    click.echo(f"key id: {key_id}")


@cli.group("key")
def key_group() -> None:
    """Manage secret key files."""


@key_group.command("passwd", epilog="\b\nExamples:\n  vaultkey key passwd payments.key"
                   "\n  vaultkey key passwd payments.key --remove")
@click.argument("key_file", type=click.Path(dir_okay=False))
@click.option("--remove", is_flag=True, help="Store the key unprotected again (mode 0600).")
def passwd(key_file: str, remove: bool) -> None:
    """Add, change or remove the passphrase of a secret key file.

    The current passphrase (if any) comes from VAULTKEY_PASSPHRASE_FILE or a prompt; the
    new one from VAULTKEY_NEW_PASSPHRASE_FILE or a prompt (typed twice). The file is
    replaced atomically, mode 0600; the key itself does not change.
    """
    from pathlib import Path

    from vaultkey._files import write_private
    from vaultkey.crypto import SecretKey

    path = Path(key_file)
    key = SecretKey.load(path)  # asks for the current passphrase if there is one
    new = None if remove else _new_passphrase(str(path))
    text = key.to_file_text(f"name: {path.stem}", passphrase=new)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_private(temporary, text.encode("utf-8"), exclusive=True)
    os.replace(temporary, path)
    state = "no longer protected" if remove else "protected by the new passphrase"
    click.echo(f"{path}: {state} (key id {key.key_id})", err=True)

"""Envelopes for tests: encrypted to exactly the groups a policy directory lets read a path."""

from __future__ import annotations

import shutil
from pathlib import Path

from vaultkey.crypto import SecretKey
from vaultkey.keys import PublicKey
from vaultkey.policy.load import load_policy_dir
from vaultkey.signkey import write_keypair


def reader_keys(policy_dir: str | Path, path: str) -> list[PublicKey]:
    """The keys a value at *path* must be encrypted to (deduplicated, in group order)."""
    loaded = load_policy_dir(policy_dir)
    keys: dict[str, PublicKey] = {}
    for group in loaded.policy_set.readers(path):
        for key in loaded.recipients_for(group):
            keys.setdefault(key.key_id, key)
    return list(keys.values())


def write_policies(policies: dict[str, str], workdir: Path) -> tuple[Path, dict[str, SecretKey]]:
    """Write policy files under ``workdir/policies`` with a fresh key pair per group; the
    public keys sit beside the policies, the secret keys in *workdir* (``GROUP.key``)."""
    pol = workdir / "policies"
    pol.mkdir()
    keys = {}
    for name, text in policies.items():
        (pol / name).write_text(text)
        group = name.removesuffix(".toml")
        key_path, _pub = write_keypair(pol / group)
        keys[group] = SecretKey.load(key_path)
        shutil.move(str(key_path), str(workdir / f"{group}.key"))
    return pol, keys

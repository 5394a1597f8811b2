"""Envelopes for tests: encrypted to exactly the groups a policy directory lets read a path."""

from __future__ import annotations

from pathlib import Path

from vaultkey.keys import PublicKey
from vaultkey.policy.load import load_policy_dir


def reader_keys(policy_dir: str | Path, path: str) -> list[PublicKey]:
    """The keys a value at *path* must be encrypted to (deduplicated, in group order)."""
    loaded = load_policy_dir(policy_dir)
    keys: dict[str, PublicKey] = {}
    for group in loaded.policy_set.readers(path):
        for key in loaded.recipients_for(group):
            keys.setdefault(key.key_id, key)
    return list(keys.values())

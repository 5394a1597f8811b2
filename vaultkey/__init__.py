"""vaultkey: client-side encrypted secrets and configuration in etcd.

The public API is small and re-exported here; everything else is internal::

    >>> import vaultkey
    >>> key = vaultkey.SecretKey.generate()
    >>> blob = vaultkey.encrypt(b"hunter2", "/app/db", [key.public])
    >>> vaultkey.decrypt(blob, "/app/db", key)
    b'hunter2'

Heavy modules (etcd/gRPC, FastAPI, httpx) are imported lazily so that
``import vaultkey`` and the CLI stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vaultkey._version import __version__
from vaultkey.errors import (
    Conflict,
    DecryptionError,
    InvalidPath,
    KeyFileError,
    MalformedEnvelope,
    NotFound,
    PermissionDenied,
    PolicyError,
    ProtocolError,
    RequestTimeout,
    StoreError,
    Unauthenticated,
    Unavailable,
    UntrustedRecipient,
    UsageError,
    ValueTooLarge,
    VaultkeyError,
)
from vaultkey.keys import PublicKey

if TYPE_CHECKING:
    from vaultkey.client import AsyncClient, Client, Item
    from vaultkey.client.trust import TrustStore
    from vaultkey.crypto import SecretKey, decrypt, encrypt

_LAZY = {
    "SecretKey": "vaultkey.crypto",
    "encrypt": "vaultkey.crypto",
    "decrypt": "vaultkey.crypto",
    "Client": "vaultkey.client",
    "AsyncClient": "vaultkey.client",
    "Item": "vaultkey.client",
    "TrustStore": "vaultkey.client.trust",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vaultkey' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AsyncClient",
    "Client",
    "Conflict",
    "DecryptionError",
    "InvalidPath",
    "Item",
    "KeyFileError",
    "MalformedEnvelope",
    "NotFound",
    "PermissionDenied",
    "PolicyError",
    "ProtocolError",
    "PublicKey",
    "RequestTimeout",
    "SecretKey",
    "StoreError",
    "TrustStore",
    "Unauthenticated",
    "Unavailable",
    "UntrustedRecipient",
    "UsageError",
    "ValueTooLarge",
    "VaultkeyError",
    "__version__",
    "decrypt",
    "encrypt",
]

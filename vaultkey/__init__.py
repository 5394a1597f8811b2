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

from vaultkey import errors as _errors
from vaultkey._version import __version__
from vaultkey.errors import (
    CommandFailed as CommandFailed,
)
from vaultkey.errors import (  # re-exported: every error class is public
    Conflict as Conflict,
)
from vaultkey.errors import (
    DecryptionError as DecryptionError,
)
from vaultkey.errors import (
    InvalidPath as InvalidPath,
)
from vaultkey.errors import (
    KeyFileError as KeyFileError,
)
from vaultkey.errors import (
    MalformedEnvelope as MalformedEnvelope,
)
from vaultkey.errors import (
    NoSpace as NoSpace,
)
from vaultkey.errors import (
    NotFound as NotFound,
)
from vaultkey.errors import (
    OutcomeUnknown as OutcomeUnknown,
)
from vaultkey.errors import (
    PermissionDenied as PermissionDenied,
)
from vaultkey.errors import (
    PolicyError as PolicyError,
)
from vaultkey.errors import (
    ProtocolError as ProtocolError,
)
from vaultkey.errors import (
    RateLimited as RateLimited,
)
from vaultkey.errors import (
    RequestTimeout as RequestTimeout,
)
from vaultkey.errors import (
    RollbackDetected as RollbackDetected,
)
from vaultkey.errors import (
    SignatureError as SignatureError,
)
from vaultkey.errors import (
    SignatureRequired as SignatureRequired,
)
from vaultkey.errors import (
    StoreError as StoreError,
)
from vaultkey.errors import (
    TemplateError as TemplateError,
)
from vaultkey.errors import (
    Unauthenticated as Unauthenticated,
)
from vaultkey.errors import (
    Unavailable as Unavailable,
)
from vaultkey.errors import (
    UntrustedRecipient as UntrustedRecipient,
)
from vaultkey.errors import (
    UsageError as UsageError,
)
from vaultkey.errors import (
    ValueTooLarge as ValueTooLarge,
)
from vaultkey.errors import (
    VaultkeyError as VaultkeyError,
)
from vaultkey.errors import (
    WrongPassphrase as WrongPassphrase,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (the CLI's start-up)
if TYPE_CHECKING:
    from typing import Any

    from vaultkey.client import AsyncClient, Client, Item, Registration, WatchEvent
    from vaultkey.client.trust import TrustStore
    from vaultkey.crypto import SecretKey, decrypt, encrypt
    from vaultkey.keys import PublicKey, SigningPublicKey
    from vaultkey.signkey import SigningKey

_LAZY = {
    "PublicKey": "vaultkey.keys",
    "SigningPublicKey": "vaultkey.keys",
    "SigningKey": "vaultkey.signkey",
    "SecretKey": "vaultkey.crypto",
    "encrypt": "vaultkey.crypto",
    "decrypt": "vaultkey.crypto",
    "Client": "vaultkey.client",
    "AsyncClient": "vaultkey.client",
    "Item": "vaultkey.client",
    "WatchEvent": "vaultkey.client",
    "Registration": "vaultkey.client",
    "TrustStore": "vaultkey.client.trust",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vaultkey' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["AsyncClient", "Client", "Item", "PublicKey", "Registration", "SecretKey",
           "SigningKey", "SigningPublicKey", "TrustStore", "WatchEvent",
           "__version__", "decrypt", "encrypt"]
__all__ += _errors.__all__  # every error class is public

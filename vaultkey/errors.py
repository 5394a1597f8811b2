"""The whole vaultkey exception tree.

Every error vaultkey raises on purpose is a :class:`VaultkeyError`. Lower
layers' errors (gRPC, HTTP, OS) are mapped to this tree at one boundary each
and re-raised ``from exc``; callers never need to catch ``grpc.RpcError`` or
``httpx.HTTPError``::

    VaultkeyError                    base; .exit_code for the CLI
    ├── UsageError                   bad input from the caller (exit 64)
    │   ├── InvalidPath              path fails the documented rules
    │   ├── ValueTooLarge            envelope would exceed etcd's request limit
    │   └── RequestTimeout           the request body did not arrive in time (HTTP 408)
    ├── KeyFileError                 key file unreadable, too open, corrupted (exit 66)
    │   └── WrongPassphrase          the passphrase does not open the key file (exit 10)
    ├── MalformedEnvelope            bytes are not a well-formed v1 envelope (exit 65)
    │   └── SignatureRequired        the proxy refuses a write missing a required signature
    ├── DecryptionError              the one error for every failed decryption (exit 7)
    │   ├── SignatureError           unsigned, or not signed by a trusted writer (exit 11)
    │   └── RollbackDetected         older than a value this reader already saw (exit 12)
    ├── UntrustedRecipient           the proxy named a key not in the trust store (exit 9)
    ├── CommandFailed                a render check or reload command failed or timed out (exit 13)
    ├── TemplateError                a template did not render: syntax, a missing key (exit 14)
    ├── PolicyError                  a policy file is invalid; carries file and line (exit 78)
    ├── NotFound                     no such key (exit 3)
    ├── PermissionDenied             the ACL says no (exit 4)
    ├── Unauthenticated              missing, bad, expired or revoked token (exit 5)
    ├── Conflict                     compare-and-swap or create-only lost (exit 6)
    ├── Unavailable                  etcd or the proxy cannot be reached (exit 8)
    │   ├── RateLimited              too many requests for a rate limit (HTTP 429)
    │   ├── NoSpace                  etcd is out of space: writes refused (HTTP 507)
    │   └── OutcomeUnknown           a write may or may not have been applied (exit 15)
    ├── StoreError                   etcd answered with an unexpected error (exit 8)
    └── ProtocolError                the server did not answer like a vaultkey proxy (exit 1)

Example::

    >>> from vaultkey.errors import DecryptionError, VaultkeyError
    >>> issubclass(DecryptionError, VaultkeyError)
    True
"""

from __future__ import annotations


class VaultkeyError(Exception):
    """Base class of every error vaultkey raises deliberately."""

    exit_code: int = 1
    # How the proxy answers this error over HTTP (and how the SDK maps it back).
    http_status: int = 500
    code: str = "internal"

    def __init_subclass__(cls, *, http_status: int | None = None, code: str | None = None,
                          exit_code: int | None = None) -> None:
        # Why keywords: each class states its HTTP status, wire code and CLI exit code on
        # one line, and the proxy, the SDK and the CLI all read them from here.
        super().__init_subclass__()
        if http_status is not None:
            cls.http_status = http_status
        if code is not None:
            cls.code = code
        if exit_code is not None:
            cls.exit_code = exit_code

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """One human line (plus the next step, if known) for the CLI."""
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class UsageError(VaultkeyError, http_status=422, code="invalid_request", exit_code=64):
    """The caller passed something invalid (argument, option, value)."""


class InvalidPath(UsageError):
    """A key path or prefix breaks the path rules (see docs/FORMAT.md)."""


class ValueTooLarge(UsageError, http_status=413, code="value_too_large"):
    """The envelope would exceed etcd's request size limit."""


class RequestTimeout(UsageError, http_status=408, code="request_timeout"):
    """The client did not send the whole request in time (the proxy's body timeout)."""


class KeyFileError(VaultkeyError, exit_code=66):
    """A key file cannot be used: missing, too open, corrupted or of the wrong type."""


class WrongPassphrase(KeyFileError, exit_code=10):
    """The passphrase does not open a passphrase-protected secret key file."""


class MalformedEnvelope(VaultkeyError, http_status=422, code="invalid_envelope", exit_code=65):
    """The bytes are not a well-formed vaultkey envelope (parse-time check)."""


class DecryptionError(VaultkeyError, exit_code=7):
    """Decryption failed. The message never says anything about the plaintext."""


class SignatureError(DecryptionError, exit_code=11):
    """A reader refused a value: unsigned where its trust store requires a signature,
    signed by a writer it does not trust for the path, or a signature that does not verify."""


class RollbackDetected(DecryptionError, exit_code=12):
    """The value's counter is lower than one this reader already saw for the path: an
    older envelope was put back (docs/SECURITY.md, "Rollback")."""


class SignatureRequired(MalformedEnvelope, code="signature_required"):
    """The proxy refused a write: the policy requires a signature by a listed writer."""


class UntrustedRecipient(VaultkeyError, exit_code=9):
    """A recipient key offered by the proxy is not in the client's trust store."""


class CommandFailed(VaultkeyError, exit_code=13):
    """A check or reload command of ``vaultkey render`` failed or ran out of time."""


class TemplateError(VaultkeyError, exit_code=14):
    """A template did not render (syntax, a missing or unloaded key, bad JSON)."""


class PolicyError(VaultkeyError, http_status=500, code="policy_error", exit_code=78):
    """A policy file is invalid."""

    def __init__(
        self, message: str, *, source: str | None = None, line: int | None = None
    ) -> None:
        where = source or "<policy>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.reason = message


class NotFound(VaultkeyError, http_status=404, code="not_found", exit_code=3):
    """The key does not exist (only ever reported to callers allowed to read it)."""


class PermissionDenied(VaultkeyError, http_status=403, code="permission_denied", exit_code=4):
    """The caller's group may not do this on this path."""


class Unauthenticated(VaultkeyError, http_status=401, code="unauthenticated", exit_code=5):
    """No token, or the token is unknown, expired or revoked."""


class Conflict(VaultkeyError, http_status=409, code="conflict", exit_code=6):
    """A compare-and-swap or create-only write lost the race."""


class Unavailable(VaultkeyError, http_status=503, code="unavailable", exit_code=8):
    """etcd or the proxy cannot be reached; retrying later may succeed."""

    def __init__(
        self, message: str, *, hint: str | None = None, retry_after: float | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after
        self.retryable = retryable


class RateLimited(Unavailable, http_status=429, code="rate_limited"):
    """A rate limit of the proxy refused the request; retry after ``retry_after`` seconds."""


class NoSpace(Unavailable, http_status=507, code="insufficient_storage"):
    """etcd raised its NOSPACE alarm: it refuses writes until an operator frees space."""


class OutcomeUnknown(Unavailable, code="outcome_unknown", exit_code=15):
    """A write was sent, and then etcd or the proxy failed before it answered: it may or may
    not have been applied. Never retry it blindly; read the key to see what happened (a
    compare-and-swap retried with its old revision is safe: it applies at most once)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or (
            "read the key to see whether the write was applied before writing again"),
            retryable=False)


class StoreError(VaultkeyError, http_status=502, code="store_error", exit_code=8):
    """etcd answered with an error that is neither unavailability nor a conflict."""


class ProtocolError(VaultkeyError, exit_code=1):
    """The answer was not what a vaultkey proxy sends (wrong address, a gateway, a bug)."""


__all__ = [
    "CommandFailed",
    "Conflict",
    "DecryptionError",
    "InvalidPath",
    "KeyFileError",
    "MalformedEnvelope",
    "NoSpace",
    "NotFound",
    "OutcomeUnknown",
    "PermissionDenied",
    "PolicyError",
    "ProtocolError",
    "RateLimited",
    "RequestTimeout",
    "RollbackDetected",
    "SignatureError",
    "SignatureRequired",
    "StoreError",
    "TemplateError",
    "Unauthenticated",
    "Unavailable",
    "UntrustedRecipient",
    "UsageError",
    "ValueTooLarge",
    "VaultkeyError",
    "WrongPassphrase",
]

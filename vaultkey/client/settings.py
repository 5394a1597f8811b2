"""Client settings: explicit arguments, a chosen profile or ``VAULTKEY_*``, the default profile.

The config file (``~/.config/vaultkey/config.toml``, or ``VAULTKEY_CONFIG``)
holds named profiles::

    default_profile = "dev"

    [profiles.dev]
    addr = "https://127.0.0.1:8443"
    cacert = "/tmp/vaultkey-dev/ca.pem"
    token_file = "/tmp/vaultkey-dev/dev.token"
    key = "/tmp/vaultkey-dev/dev.key"
    trust = "/tmp/vaultkey-dev/trust"

Tokens are never stored inline in the file, only referenced by ``token_file``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vaultkey.errors import UsageError

DEFAULT_ADDR = "https://127.0.0.1:8443"
_ENV = {
    "addr": "VAULTKEY_ADDR",
    "token": "VAULTKEY_TOKEN",
    "token_file": "VAULTKEY_TOKEN_FILE",
    "cacert": "VAULTKEY_CACERT",
    "client_cert": "VAULTKEY_CLIENT_CERT",
    "client_key": "VAULTKEY_CLIENT_KEY",
    "key": "VAULTKEY_KEY",
    "trust": "VAULTKEY_TRUST",
    "timeout": "VAULTKEY_TIMEOUT",
}
_PROFILE_KEYS = {"addr", "token_file", "cacert", "client_cert", "client_key", "key", "trust",
                 "timeout"}


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vaultkey" / "config.toml"


@dataclass(frozen=True)
class ClientSettings:
    """Everything a client needs to reach the proxy and decrypt."""

    addr: str = DEFAULT_ADDR
    token: str | None = field(default=None, repr=False)
    cacert: str | None = None
    client_cert: str | None = None  # for proxies that require mutual TLS (--client-ca)
    client_key: str | None = None
    key: str | None = None
    trust: str | None = None
    timeout: float = 10.0
    retries: int = 3


def read_token_file(path: str) -> str:
    """The token in *path*, which group and others must not be able to read."""
    from vaultkey._files import read_private

    try:
        token = read_private(path, "token file").decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(f"token file {path} is not UTF-8 text") from None
    if not token:
        raise UsageError(f"token file {path} is empty")
    return token


def load_profile(name: str | None, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The named (or default) profile from the config file.

    A missing default file (~/.config/vaultkey/config.toml) means no profile; a
    missing file that was asked for explicitly is an error.
    """
    cfg = Path(path).expanduser() if path else default_config_path()
    if not cfg.exists():
        if name or path:
            raise UsageError(f"config file {cfg} does not exist",
                             hint="create it, or unset --config / VAULTKEY_CONFIG")
        return {}
    try:
        data = tomllib.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {cfg}: {exc}") from exc
    profiles = data.get("profiles", {})
    chosen = name or data.get("default_profile")
    if not chosen:
        return {}
    if chosen not in profiles:
        raise UsageError(f"no profile {chosen!r} in {cfg}",
                         hint=f"known profiles: {', '.join(sorted(profiles)) or 'none'}")
    profile = dict(profiles[chosen])
    unknown = sorted(set(profile) - _PROFILE_KEYS)
    if unknown:
        raise UsageError(f"{cfg}: unknown keys in profile {chosen!r}: {', '.join(unknown)}")
    return profile


def resolve(
    explicit: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    profile: str | None = None,
    config_path: str | os.PathLike[str] | None = None,
) -> ClientSettings:
    """Combine the settings: explicit values first, then the environment or a profile.

    Order: explicit values > an explicitly chosen profile (``--profile`` /
    ``VAULTKEY_PROFILE``) > ``VAULTKEY_*`` environment > the config file's
    ``default_profile`` > defaults. Why a chosen profile beats the environment:
    ``--profile prod`` must never send a token left in VAULTKEY_TOKEN by a dev
    shell to the prod address.
    """
    environ = os.environ if env is None else env
    chosen = profile or environ.get("VAULTKEY_PROFILE")
    from_profile = load_profile(chosen, config_path or environ.get("VAULTKEY_CONFIG"))
    merged: dict[str, Any] = dict(from_profile)
    if not chosen:
        _apply_env(merged, environ)
    for name, value in (explicit or {}).items():
        if value is not None:
            merged[name] = value
            if name in ("token", "token_file"):
                merged.pop("token_file" if name == "token" else "token", None)
    _check_token_goes_home(from_profile, merged)
    for name in ("token_file", "cacert", "client_cert", "client_key", "key", "trust"):
        if isinstance(merged.get(name), str):
            merged[name] = os.path.expanduser(merged[name])
    token_file = merged.pop("token_file", None)
    if token_file and not merged.get("token"):
        merged["token"] = read_token_file(token_file)
    if "timeout" in merged:
        try:
            merged["timeout"] = float(merged["timeout"])
        except ValueError:
            raise UsageError(f"bad timeout {merged['timeout']!r}: a number of seconds") from None
    known = {f.name for f in fields(ClientSettings)}
    return ClientSettings(**{k: v for k, v in merged.items() if k in known})


def _check_token_goes_home(from_profile: Mapping[str, Any], merged: Mapping[str, Any]) -> None:
    """A profile's token is only ever sent to that profile's own address."""
    token_from_profile = "token_file" in from_profile and \
        merged.get("token_file") == from_profile["token_file"] and not merged.get("token")
    if token_from_profile and merged.get("addr") != from_profile.get("addr"):
        raise UsageError(
            "the profile's token_file would be sent to another address "
            f"({merged.get('addr', 'the default')})",
            hint="give a token for that address (--token-file / VAULTKEY_TOKEN), or choose "
            "the profile with --profile and no other address")


def _apply_env(merged: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, var in _ENV.items():
        if environ.get(var) and name not in ("token", "token_file"):
            merged[name] = environ[var]
    # VAULTKEY_TOKEN beats VAULTKEY_TOKEN_FILE, which beats the profile's token_file.
    if environ.get("VAULTKEY_TOKEN"):
        merged["token"] = environ["VAULTKEY_TOKEN"]
        merged.pop("token_file", None)
    elif environ.get("VAULTKEY_TOKEN_FILE"):
        merged["token_file"] = environ["VAULTKEY_TOKEN_FILE"]
        merged.pop("token", None)

"""Client settings: one declared table, resolved from flags, ``VAULTKEY_*`` and profiles.

Each client setting is one field of :class:`ClientSettings`, declared with its
environment variable, its key in a config-file profile and its global CLI flag.
:func:`resolve`, ``Client(...)``, ``Client.from_env`` and the CLI's global options
are all read from that table (:data:`SETTINGS`), so a new setting is one new field::

    >>> [(s.name, s.env, s.profile_key, s.flag) for s in SETTINGS][:2]
    [('addr', 'VAULTKEY_ADDR', 'addr', '--addr'), ('token', 'VAULTKEY_TOKEN', None, '--token')]

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

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from vaultkey.errors import UsageError

DEFAULT_ADDR = "https://127.0.0.1:8443"
T = TypeVar("T")


class Setting(NamedTuple):  # a NamedTuple, not a dataclass: the CLI builds these at start-up
    """One row of the settings table: a setting and every place it may be given from."""

    name: str
    env: str | None  # the VAULTKEY_* variable
    profile_key: str | None  # its key in a config-file profile
    flag: str | None  # the global CLI option
    metavar: str = ""
    help: str = ""
    parse: Callable[[Any], Any] | None = None  # float, int; None: taken as given
    is_path: bool = False  # "~" is expanded
    # Settings that share a `one_of` are one setting given two ways: within a source the
    # first in the table wins, and either one hides both in every lower source.
    one_of: str | None = None
    default: Any = None

    def cli_help(self) -> str:
        where = [f"env {self.env}"] if self.env else []
        where += [f"profile {self.profile_key}"] if self.profile_key else []
        where += [f"default {self.default}"] if self.default is not None else []
        return f"{self.help} [{', '.join(where)}]" if where else self.help


def _row(default: T, env: str | None, profile_key: str | None, flag: str | None,
         metavar: str, text: str, *, parse: Callable[[Any], Any] | None = None,
         path: bool = False, secret: bool = False, one_of: str | None = None) -> T:
    """A field of :class:`ClientSettings` that is also a row of the settings table."""
    spec = {"env": env, "profile_key": profile_key, "flag": flag, "metavar": metavar,
            "help": text, "parse": parse, "is_path": path, "one_of": one_of}
    return field(default=default, repr=not secret, metadata={"setting": spec})


@dataclass(frozen=True)
class ClientSettings:
    """Everything a client needs to reach the proxy and decrypt: the table of settings.

    Columns: default, environment variable, profile key, CLI flag, metavar, help.
    """

    addr: str = _row(DEFAULT_ADDR, "VAULTKEY_ADDR", "addr", "--addr", "URL",
                     "Proxy address (several replicas: comma-separated, with failover).")
    # Why no profile key: a config file holds no secrets, only a token_file reference.
    token: str | None = _row(None, "VAULTKEY_TOKEN", None, "--token", "TOKEN",
                             "Token. Prefer --token-file or the environment.",
                             secret=True, one_of="token")
    token_file: str | None = _row(None, "VAULTKEY_TOKEN_FILE", "token_file", "--token-file",
                                  "FILE", "Read the token from FILE (mode 0600).", path=True,
                                  one_of="token")
    cacert: str | None = _row(None, "VAULTKEY_CACERT", "cacert", "--cacert", "FILE",
                              "CA certificate of the proxy's TLS certificate.", path=True)
    # For proxies that require mutual TLS (serve --client-ca).
    client_cert: str | None = _row(None, "VAULTKEY_CLIENT_CERT", "client_cert", "--client-cert",
                                   "FILE", "TLS client certificate, if the proxy requires one.",
                                   path=True)
    client_key: str | None = _row(None, "VAULTKEY_CLIENT_KEY", "client_key", "--client-key",
                                  "FILE", "Key of the TLS client certificate.", path=True)
    key: str | None = _row(None, "VAULTKEY_KEY", "key", "--key", "FILE",
                           "Your secret key file (or several, joined with ':', while your "
                           "group rotates keys).", path=True)
    trust: str | None = _row(None, "VAULTKEY_TRUST", "trust", "--trust", "PATH",
                             "Trusted recipient keys: a directory of .pub files or a file of "
                             "key ids.", path=True)
    signing_key: str | None = _row(None, "VAULTKEY_SIGNING_KEY", "signing_key", "--signing-key",
                                   "FILE", "Your writer signing key (.sigkey): every value you "
                                   "write is signed with it.", path=True)
    marks: str | None = _row(None, "VAULTKEY_MARKS", "marks", "--marks", "FILE",
                             "Where the highest counter seen per path is kept, to detect "
                             "rollbacks ('off': memory only; the CLI's default is "
                             "$XDG_STATE_HOME/vaultkey/marks.json; the SDK's, memory).",
                             path=True)
    timeout: float = _row(10.0, "VAULTKEY_TIMEOUT", "timeout", "--timeout", "SECONDS",
                          "Network timeout of each request.", parse=float)
    # SDK only (Client(retries=...)): the CLI keeps the default.
    retries: int = _row(3, None, None, None, "N", "Retries of a read on 503 or a lost "
                        "connection.", parse=int)


SETTINGS: tuple[Setting, ...] = tuple(Setting(f.name, **f.metadata["setting"], default=f.default)
                                      for f in dataclasses.fields(ClientSettings))
NAMES = frozenset(s.name for s in SETTINGS)

# Not settings but where they come from: which profile of which config file.
PROFILE_ENV, CONFIG_ENV = "VAULTKEY_PROFILE", "VAULTKEY_CONFIG"
SOURCES = (
    Setting("profile", PROFILE_ENV, None, "--profile", "NAME", "Profile from the config file."),
    Setting("config", CONFIG_ENV, None, "--config", "FILE",
            "Client config file.", default="~/.config/vaultkey/config.toml"),
)

_KINDS: dict[Callable[[Any], Any], str] = {float: "a number", int: "a whole number"}


def default_config_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "vaultkey", "config.toml")


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
    """The named (or default) profile from the config file, by profile key.

    A missing default file (~/.config/vaultkey/config.toml) means no profile; a
    missing file that was asked for explicitly is an error.
    """
    cfg = os.path.expanduser(os.fspath(path)) if path else default_config_path()
    if not os.path.exists(cfg):
        if name or path:
            raise UsageError(f"config file {cfg} does not exist",
                             hint="create it, or unset --config / VAULTKEY_CONFIG")
        return {}
    import tomllib  # only when there is a file to read: ~4 ms of a CLI process otherwise
    try:
        with open(cfg, encoding="utf-8") as fh:
            data = tomllib.loads(fh.read())
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
    unknown = sorted(set(profile) - {s.profile_key for s in SETTINGS})
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
    chosen = profile or environ.get(PROFILE_ENV)
    from_file = load_profile(chosen, config_path or environ.get(CONFIG_ENV))
    from_profile = {s.name: from_file[s.profile_key] for s in SETTINGS
                    if s.profile_key in from_file}
    merged: dict[str, Any] = {}
    _overlay(merged, from_profile)
    if not chosen:
        _overlay(merged, {s.name: environ.get(s.env) or None for s in SETTINGS if s.env})
    _overlay(merged, _known(explicit or {}))
    _check_token_goes_home(from_profile, merged)
    return ClientSettings(**_finish(merged))


def apply(base: ClientSettings, explicit: Mapping[str, Any]) -> ClientSettings:
    """*base* with the *explicit* values (None: not given) put over it, as :func:`resolve` would.

    Giving one of a ``one_of`` pair (a token or a token file) replaces both.
    """
    merged: dict[str, Any] = {}
    _overlay(merged, _known(explicit))
    given = {s.one_of for s in SETTINGS if s.name in merged and s.one_of}
    cleared = {s.name: None for s in SETTINGS if s.one_of in given and s.name not in merged}
    return dataclasses.replace(base, **{**cleared, **_finish(merged)})


def _known(explicit: Mapping[str, Any]) -> Mapping[str, Any]:
    unknown = sorted(set(explicit) - NAMES)
    if unknown:
        raise TypeError(f"unknown client setting(s): {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(NAMES))})")
    return explicit


def _overlay(merged: dict[str, Any], source: Mapping[str, Any]) -> None:
    """Put the values *source* gives (not None) over those of the lower sources in *merged*."""
    taken: set[str] = set()
    for s in SETTINGS:
        value = source.get(s.name)
        if value is None or s.one_of in taken:
            continue
        if s.one_of:
            taken.add(s.one_of)
            for alternative in SETTINGS:
                if alternative.one_of == s.one_of:
                    merged.pop(alternative.name, None)
        merged[s.name] = value


def _finish(merged: Mapping[str, Any]) -> dict[str, Any]:
    """Paths expanded, numbers parsed, and the token read from its file."""
    done: dict[str, Any] = {}
    for s in SETTINGS:
        value = merged.get(s.name)
        if value is None:
            continue
        if s.is_path and isinstance(value, str | os.PathLike):
            value = os.path.expanduser(value)
        elif s.parse is not None:
            try:
                value = s.parse(value)
            except (TypeError, ValueError):
                kind = _KINDS.get(s.parse, "another value")
                raise UsageError(f"bad {s.name} {value!r}: {kind} ({s.metavar})") from None
        done[s.name] = value
    if done.get("token_file") and not done.get("token"):
        done["token"] = read_token_file(done["token_file"])
    return done


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

"""Client settings (client/settings.py): the one table, and how it is resolved.

Every setting is one row: name, environment variable, profile key, CLI flag. Each is
resolvable from each place it declares, with flag > environment > default profile (a
profile chosen by name beats the environment), for the SDK and the CLI alike.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import vaultkey
from vaultkey._cli.common import cli
from vaultkey._files import write_private
from vaultkey.client import Client
from vaultkey.client.settings import NAMES, SETTINGS, SOURCES, ClientSettings, Setting, resolve
from vaultkey.crypto import SecretKey

FLAGGED = [s for s in SETTINGS if s.flag]


@pytest.fixture(autouse=True)
def _no_vaultkey_environment(monkeypatch, tmp_path):
    import os

    for name in list(os.environ):
        if name.startswith("VAULTKEY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


def _sample(s: Setting, source: str, tmp_path: Path) -> tuple[str, str, Any]:
    """(text to give, attribute to read back, the value it must have) for *s* from *source*."""
    if s.name == "token_file":  # read at resolution: the token is what it gives
        path = tmp_path / f"{source}.token"
        write_private(path, f"token-from-{source}\n".encode())
        return str(path), "token", f"token-from-{source}"
    if s.parse is not None:
        number = {"profile": 2, "env": 3, "flag": 4}[source]
        return str(number), s.name, s.parse(str(number))
    if s.name == "addr":
        return f"https://{source}:1", s.name, f"https://{source}:1"
    text = f"/{source}/{s.name}" if s.is_path else f"{s.name}-from-{source}"
    return text, s.name, text


def _config(tmp_path: Path, s: Setting, text: str) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'default_profile = "p"\n[profiles.p]\n{s.profile_key} = "{text}"\n')
    return cfg


def _from_cli(*args: str) -> ClientSettings:
    """What the CLI resolves for these global options (the root command, parsed by click)."""
    with cli.make_context("vaultkey", [*args, "whoami"]) as ctx:
        cli.callback(**ctx.params)
        return ctx.obj.settings()


def test_the_table_is_the_settings_dataclass():
    assert [s.name for s in SETTINGS] == [f.name for f in dataclasses.fields(ClientSettings)]
    assert {s.name for s in SETTINGS} == NAMES
    rows = [*SETTINGS, *SOURCES]
    for column in ("env", "flag", "profile_key"):
        given = [getattr(s, column) for s in rows if getattr(s, column)]
        assert len(given) == len(set(given)), column
    assert all(s.env.startswith("VAULTKEY_") for s in rows if s.env)
    assert all(s.flag == "--" + s.name.replace("_", "-") for s in rows if s.flag)


def test_the_cli_has_one_global_option_per_flagged_row():
    options = {p.name: p.opts for p in cli.params if p.name not in ("version", "help")}
    assert options == {s.name: [s.flag] for s in (*SETTINGS, *SOURCES) if s.flag}


@pytest.mark.parametrize("s", [s for s in SETTINGS if s.env], ids=lambda s: s.name)
def test_every_setting_resolves_from_its_environment_variable(s, tmp_path):
    text, attr, expected = _sample(s, "env", tmp_path)
    assert getattr(resolve({}, env={s.env: text}, config_path="/dev/null"), attr) == expected


@pytest.mark.parametrize("s", [s for s in SETTINGS if s.profile_key], ids=lambda s: s.name)
def test_every_setting_resolves_from_its_profile_key(s, tmp_path):
    text, attr, expected = _sample(s, "profile", tmp_path)
    cfg = _config(tmp_path, s, text)
    assert getattr(resolve({}, env={}, config_path=cfg), attr) == expected


@pytest.mark.parametrize("s", FLAGGED, ids=lambda s: s.name)
def test_every_setting_resolves_from_its_cli_flag(s, tmp_path):
    text, attr, expected = _sample(s, "flag", tmp_path)
    assert getattr(_from_cli("--config", "/dev/null", s.flag, text), attr) == expected


@pytest.mark.parametrize("s", [s for s in SETTINGS if s.env and s.profile_key and s.flag],
                         ids=lambda s: s.name)
def test_flag_beats_environment_beats_default_profile(s, tmp_path, monkeypatch):
    given = {source: _sample(s, source, tmp_path) for source in ("profile", "env", "flag")}
    monkeypatch.setenv("VAULTKEY_CONFIG", str(_config(tmp_path, s, given["profile"][0])))
    attr = given["flag"][1]
    assert getattr(_from_cli(), attr) == given["profile"][2]
    monkeypatch.setenv(s.env, given["env"][0])
    assert getattr(_from_cli(), attr) == given["env"][2]
    assert getattr(_from_cli(s.flag, given["flag"][0]), attr) == given["flag"][2]


def test_a_token_given_inline_or_by_file_is_one_setting(tmp_path):
    tf = tmp_path / "t"
    write_private(tf, b"from-file\n")
    # Within one source the inline token wins; a higher source's either hides both below.
    assert resolve({"token": "inline", "token_file": str(tf)}, env={},
                   config_path="/dev/null").token == "inline"
    assert resolve({"token_file": str(tf)}, env={"VAULTKEY_TOKEN": "env"},
                   config_path="/dev/null").token == "from-file"
    assert resolve({"token": "flag"}, env={"VAULTKEY_TOKEN_FILE": str(tf)},
                   config_path="/dev/null").token == "flag"


def test_a_bad_number_is_a_usage_error():
    with pytest.raises(vaultkey.UsageError, match="bad timeout 'soon': a number"):
        resolve({}, env={"VAULTKEY_TIMEOUT": "soon"}, config_path="/dev/null")
    with pytest.raises(vaultkey.UsageError, match="bad retries 'many': a whole number"):
        resolve({"retries": "many"}, env={}, config_path="/dev/null")


def test_client_keywords_are_the_table(tmp_path):
    tf = tmp_path / "t"
    write_private(tf, b"from-file\n")
    base = ClientSettings(addr="https://base:1", token="old", timeout=3.0)
    with Client(settings=base, token_file=str(tf), retries=0, transport=_never()) as vk:
        assert (vk.settings.addr, vk.settings.token, vk.settings.retries) == (
            "https://base:1", "from-file", 0)
        assert vk.settings.timeout == 3.0
    with pytest.raises(TypeError, match="unknown client setting"):
        Client("https://vk.test", "t", tiemout=3)


def test_from_env_takes_settings_and_objects(monkeypatch):
    monkeypatch.setenv("VAULTKEY_ADDR", "https://env:1")
    monkeypatch.setenv("VAULTKEY_CONFIG", "/dev/null")
    key = SecretKey.generate()
    with Client.from_env(token="t", key=key, timeout=2, transport=_never()) as vk:
        assert (vk.settings.addr, vk.settings.token, vk.settings.timeout) == (
            "https://env:1", "t", 2.0)
        assert vk._ops.secret_key() is key


def _never() -> Any:
    import httpx

    return httpx.MockTransport(lambda request: httpx.Response(500))


def test_explicit_beats_env_beats_default_profile(tmp_path):
    cfg = tmp_path / "c.toml"
    tf = tmp_path / "tok"
    write_private(tf, b"from-profile-file\n")  # token files must be 0600
    cfg.write_text(f'default_profile = "p"\n[profiles.p]\naddr = "https://profile:1"\n'
                   f'token_file = "{tf}"\ncacert = "/profile/ca.pem"\n')
    s = resolve({}, env={}, config_path=cfg)
    assert (s.addr, s.token, s.cacert) == ("https://profile:1", "from-profile-file",
                                           "/profile/ca.pem")
    env = {"VAULTKEY_ADDR": "https://env:2", "VAULTKEY_TOKEN": "env-token"}
    s = resolve({}, env=env, config_path=cfg)
    assert (s.addr, s.token, s.cacert) == ("https://env:2", "env-token", "/profile/ca.pem")
    s = resolve({"addr": "https://flag:3", "token": "t"}, env=env, config_path=cfg)
    assert (s.addr, s.token) == ("https://flag:3", "t")
    assert "from-profile-file" not in repr(resolve({}, env={}, config_path=cfg))


def test_a_chosen_profile_beats_the_environment(tmp_path):
    tf = tmp_path / "prod-token"
    write_private(tf, b"prod-token")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[profiles.prod]\naddr = "https://prod:1"\ntoken_file = "{tf}"\n')
    dev_shell = {"VAULTKEY_ADDR": "https://127.0.0.1:8443", "VAULTKEY_TOKEN": "dev-token"}
    s = resolve({}, env=dev_shell, profile="prod", config_path=cfg)
    assert (s.addr, s.token) == ("https://prod:1", "prod-token")
    s = resolve({}, env={**dev_shell, "VAULTKEY_PROFILE": "prod"}, config_path=cfg)
    assert (s.addr, s.token) == ("https://prod:1", "prod-token")


def test_an_explicit_config_file_must_exist(tmp_path):
    with pytest.raises(vaultkey.UsageError, match="does not exist"):
        resolve({}, env={}, config_path=tmp_path / "missing.toml")
    with pytest.raises(vaultkey.UsageError, match="does not exist"):
        resolve({}, env={"VAULTKEY_CONFIG": str(tmp_path / "missing.toml")})


def test_home_is_expanded_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    s = resolve({"key": "~/k.key", "cacert": "~/ca.pem"}, env={}, config_path="/dev/null")
    assert (s.key, s.cacert) == (f"{tmp_path}/k.key", f"{tmp_path}/ca.pem")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[profiles.p]\ntoken = "inline"\n', "unknown keys"),
        ("not toml [", "cannot read config"),
    ],
)
def test_bad_config_files_are_clear_errors(tmp_path, text, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(vaultkey.UsageError, match=message):
        resolve({}, env={}, profile="p", config_path=cfg)


def test_unknown_profile_names_known_ones(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[profiles.a]\n[profiles.b]\n")
    with pytest.raises(vaultkey.UsageError) as info:
        resolve({}, env={}, profile="zzz", config_path=cfg)
    assert "known profiles: a, b" in info.value.diagnostics()


def test_a_profile_token_is_never_sent_to_another_address(tmp_path):
    tf = tmp_path / "prod-token"
    write_private(tf, b"prod-token")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'default_profile = "prod"\n[profiles.prod]\naddr = "https://prod:1"\n'
                   f'token_file = "{tf}"\n')
    with pytest.raises(vaultkey.UsageError, match="another address"):
        resolve({}, env={"VAULTKEY_ADDR": "https://dev:2"}, config_path=cfg)
    with pytest.raises(vaultkey.UsageError, match="another address"):
        resolve({"addr": "https://other:3"}, env={}, config_path=cfg)
    s = resolve({"addr": "https://other:3", "token": "t"}, env={}, config_path=cfg)
    assert (s.addr, s.token) == ("https://other:3", "t")
    assert resolve({}, env={}, config_path=cfg).token == "prod-token"



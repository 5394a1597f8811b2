"""``vaultkey render``: configuration files from templates, confd-style, with secrets."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from vaultkey._cli.common import GlobalOptions, cli, visible

if TYPE_CHECKING:
    from vaultkey.client import Client
    from vaultkey.render.resource import Resource
    from vaultkey.render.runner import Outcome


@cli.command(epilog="""\b
Examples:
  vaultkey render haproxy.cfg.j2 /etc/haproxy/haproxy.cfg --prefix /services/web/ \\
      --check-cmd 'haproxy -c -f {{src}}' --reload-cmd 'systemctl reload haproxy'
  vaultkey render --config render.toml --watch
  vaultkey render app.env.j2 app.env --key /app/db/password --once

\b
Template helpers: get(path), getv(path, default), exists(path), ls(prefix),
gets(prefix), json(path), services(prefix); filters b64encode, b64decode,
fromjson, tojson. A missing key is an error, never an empty string.
\b
Exit codes: 0 rendered or unchanged; 13 a check or reload command failed or
timed out; 14 a template did not render; others as for every command.""")
@click.argument("template", required=False, type=click.Path(dir_okay=False))
@click.argument("dest", required=False, type=click.Path(dir_okay=False))
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="A TOML resource file describing one or more templates.")
@click.option("--prefix", "prefixes", multiple=True, metavar="PREFIX",
              help="Load (and watch) every value under PREFIX (repeatable).")
@click.option("--key", "keys", multiple=True, metavar="PATH", help="Load one key (repeatable).")
@click.option("--mode", default="0600", show_default=True, help="The output file's mode.")
@click.option("--owner", help="The output file's owner (user name or uid).")
@click.option("--group", "group_name", help="The output file's group (name or gid).")
@click.option("--check-cmd", help="Run on the staged file ({{src}}) before it replaces DEST.")
@click.option("--reload-cmd", help="Run after DEST was replaced (only when it changed).")
@click.option("--timeout", default="30s", show_default=True,
              help="Time limit of each command (its process group is killed after it).")
@click.option("--watch", "watching", is_flag=True,
              help="Keep running: render again after each (debounced) batch of changes.")
@click.option("--once", is_flag=True, help="Render once and exit (the default).")
@click.option("--wait", default="0.5s", show_default=True,
              help="With --watch: quiet time after the last change before rendering.")
@click.option("--max-wait", help="With --watch: render at most this long after the first "
              "change of a burst [default: 4 x --wait].")
@click.pass_obj
def render(opts: GlobalOptions, template: str | None, dest: str | None,
           config_file: str | None, prefixes: tuple[str, ...], keys: tuple[str, ...],
           mode: str, owner: str | None, group_name: str | None, check_cmd: str | None,
           reload_cmd: str | None, timeout: str, watching: bool, once: bool, wait: str,
           max_wait: str | None) -> None:
    """Render TEMPLATE (Jinja2, sandboxed) to DEST from values read at one etcd revision.

    DEST is written through a staged file next to it (mode 0600 until it is in place),
    checked with --check-cmd, renamed into place atomically, and only then reloaded
    with --reload-cmd; nothing is written or reloaded when the content, mode and owner
    are unchanged. A failed check keeps the old file.
    """
    from vaultkey.client import Client
    from vaultkey.durations import duration
    from vaultkey.render.resource import Resource, template_spec

    if watching and once:
        raise click.UsageError("give --watch or --once, not both")
    if config_file is not None:
        if template or dest or prefixes or keys:
            raise click.UsageError("--config describes the templates: give no TEMPLATE, "
                                   "DEST, --prefix or --key with it")
        from vaultkey.render.resource import load_resource

        resource = load_resource(config_file)
    else:
        if not (template and dest):
            raise click.UsageError("give TEMPLATE and DEST, or --config FILE")
        data: dict[str, object] = {"src": template, "dest": dest, "prefixes": list(prefixes),
                                   "keys": list(keys), "mode": mode, "timeout": timeout}
        data.update({k: v for k, v in (("owner", owner), ("group", group_name),
                                       ("check_cmd", check_cmd), ("reload_cmd", reload_cmd))
                     if v is not None})
        spec = template_spec(data, Path("."), "render")
        quiet = duration(wait, "--wait")
        resource = Resource([spec], quiet,
                            duration(max_wait, "--max-wait") if max_wait else 4 * quiet)
    with Client(settings=opts.client_settings()) as client:
        if watching:
            _watch(client, resource)
        else:
            _once(client, resource)


def _say(outcome: Outcome) -> None:
    for dest in outcome.changed:
        click.echo(visible(f"rendered {dest} (revision {outcome.revision})"), err=True)
    for error in outcome.errors:
        click.echo(visible(f"vaultkey: error: {error.diagnostics()}"), err=True)


def _once(client: Client, resource: Resource) -> None:
    from vaultkey.render.runner import render_once

    outcome = render_once(client, resource)
    _say(outcome)
    if not outcome.changed and not outcome.errors:
        click.echo(f"unchanged (revision {outcome.revision})", err=True)
    if outcome.errors:
        sys.exit(outcome.errors[0].exit_code)


def _watch(client: Client, resource: Resource) -> None:
    import signal
    import threading

    from vaultkey.render.runner import watch

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watch(client, resource, stop, _say)

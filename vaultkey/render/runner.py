"""Rendering a resource once, or for as long as it runs, with trailing-edge debounce.

Every run reads all of the resource's prefixes and keys as **one snapshot** (one etcd
revision), renders every template, and applies each (vaultkey/render/output.py), so a
reload happens only for a file whose bytes, mode or owner changed.

``watch``: the first render happens at once. Then each change (from the watch stream on
every prefix, and on the parent prefix of every key) starts a quiet period of ``wait``;
each further change restarts it, but never past ``max_wait`` after the first, so a burst of
writes gives one render of the *final* state and one reload (never a dropped last change).
A run that fails (a check command, a missing key) keeps the old files and is retried with
backoff up to a minute, not only at the next change; the watcher keeps running.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vaultkey.errors import TemplateError, Unauthenticated, VaultkeyError
from vaultkey.render.output import apply
from vaultkey.render.resource import Resource
from vaultkey.render.template import Scope, render

if TYPE_CHECKING:
    from vaultkey.client import Client

log = logging.getLogger("vaultkey.render")
_MAX_RETRY = 60.0


@dataclass(frozen=True)
class Outcome:
    revision: int
    changed: list[str]  # destinations written (and reloaded)
    errors: list[VaultkeyError]


def render_once(client: Client, resource: Resource, at: int | None = None) -> Outcome:
    """Read one snapshot and apply every template; errors are collected per template."""
    snap = client.snapshot(resource.prefixes, resource.keys, at=at)
    changed: list[str] = []
    errors: list[VaultkeyError] = []
    for spec in resource.templates:
        try:
            source = spec.src.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(TemplateError(f"cannot read template {spec.src}: {exc}"))
            continue
        scope = Scope(snap.values, snap.revision, spec.prefixes, spec.keys)
        try:
            text = render(source, spec.name, scope)
            if apply(spec.target, text.encode("utf-8")):
                changed.append(str(spec.target.dest))
        except VaultkeyError as exc:
            errors.append(exc)
    return Outcome(snap.revision, changed, errors)


def watched_prefixes(resource: Resource) -> list[str]:
    """The prefixes to watch: each prefix, and the parent of each key not under one."""
    prefixes = list(resource.prefixes)
    for key in resource.keys:
        if not any(key.startswith(p) for p in prefixes):
            parent = key.rsplit("/", 1)[0] + "/"
            if parent not in prefixes:
                prefixes.append(parent)
    return sorted(prefixes)


def watch(client: Client, resource: Resource, stop: threading.Event,
          report: Callable[[Outcome], object]) -> None:
    """Render now, then on every debounced batch of changes until *stop* is set."""
    first = render_once(client, resource)
    report(first)
    changes: queue.Queue[int | VaultkeyError] = queue.Queue()
    watches = [client.watch(p, since=first.revision, decrypt=False)
               for p in watched_prefixes(resource)]
    threads = [threading.Thread(target=_follow, args=(w, changes, stop), daemon=True,
                                name=f"vaultkey-render-watch-{i}")
               for i, w in enumerate(watches)]
    for t in threads:
        t.start()
    try:
        _loop(client, resource, stop, changes, report, failed=bool(first.errors))
    finally:
        stop.set()
        for w in watches:
            w.close()


def _follow(watch: object, changes: queue.Queue[int | VaultkeyError],
            stop: threading.Event) -> None:
    try:
        for event in watch:  # type: ignore[attr-defined]
            if stop.is_set():
                return
            changes.put(int(event.revision))
    except VaultkeyError as exc:
        if not stop.is_set():
            changes.put(exc)
    except Exception as exc:  # a closed stream while stopping
        if not stop.is_set():
            changes.put(VaultkeyError(f"the watch stopped: {type(exc).__name__}"))


def _loop(client: Client, resource: Resource, stop: threading.Event,
          changes: queue.Queue[int | VaultkeyError], report: Callable[[Outcome], object],
          failed: bool) -> None:
    first_change: float | None = None
    last_change = 0.0
    retry_at = time.monotonic() + 1.0 if failed else None
    backoff = 1.0
    while not stop.is_set():
        now = time.monotonic()
        due = [t for t in (retry_at,
                           None if first_change is None else
                           min(last_change + resource.wait, first_change + resource.max_wait))
               if t is not None]
        try:
            item = changes.get(timeout=max(0.0, min(due) - now) if due else 0.2)
        except queue.Empty:
            if not due or time.monotonic() < min(due):
                continue
            outcome = render_once(client, resource)
            report(outcome)
            first_change = None
            if outcome.errors:
                retry_at, backoff = time.monotonic() + backoff, min(backoff * 2, _MAX_RETRY)
            else:
                retry_at, backoff = None, 1.0
            continue
        if isinstance(item, Unauthenticated):
            raise item
        if isinstance(item, VaultkeyError):
            log.error("watch failed: %s", item.diagnostics())
            raise item
        now = time.monotonic()
        first_change = first_change or now
        last_change = now


__all__ = ["Outcome", "render_once", "watch", "watched_prefixes"]

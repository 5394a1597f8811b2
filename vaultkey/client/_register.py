"""Registrations: a value that lives as long as its owner, under a lease kept alive.

The plan (:meth:`_Lease.plan`) is sans-I/O, like the operations of
:mod:`vaultkey.client._core`: a generator that yields requests and pauses and is
sent the answers (errors are thrown in). :class:`Registration` drives it in a
thread, :class:`AsyncRegistration` in an asyncio task::

    with vk.register("/services/web/10.0.0.7", b"10.0.0.7:8080", ttl=10) as reg:
        serve()          # the lease is renewed every ttl/3 meanwhile
    # leaving: the lease is revoked, the key is gone at once

A keep-alive that fails because the proxy or etcd cannot be reached is retried
until the TTL runs out; a lease that is gone (``404``) or has run out is
*lost*: the value is written again with a new lease, with a warning in the log
and a call of ``on_lost(reason)``; :attr:`_Lease.lost` counts them.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

from vaultkey.client._core import Pause, lease_params
from vaultkey.client._transport import Request, Response, backoff
from vaultkey.errors import NotFound, ProtocolError, Unavailable, VaultkeyError
from vaultkey.paths import validate_key

if TYPE_CHECKING:
    import asyncio

    from vaultkey.client._core import Operations
    from vaultkey.client._transport import AsyncTransport, Transport
    from vaultkey.keys import PublicKey

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0
_LEASE_ID = re.compile(r"[0-9a-f]{16}")


Step = Request | Pause
Plan = Generator[Step, Response | None, None]


def _ttl_of(body: Any) -> float:
    try:
        ttl = float(body["ttl"])
    except (KeyError, TypeError, ValueError):
        raise ProtocolError("the proxy's answer names no lease TTL") from None
    if ttl <= 0:
        raise NotFound("the lease has run out")
    return ttl


class _Lease:
    """A registration's state and plan; no I/O."""

    def __init__(self, ops: Operations, path: str, value: bytes, ttl: int | str, *,
                 recipients: Sequence[PublicKey] | None = None,
                 on_lost: Callable[[str], object] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = validate_key(path)
        self._ops, self._value, self._recipients = ops, value, recipients
        self._params = lease_params(ttl, None)
        self._on_lost, self._clock = on_lost, clock
        self.lease: str | None = None
        """The current lease id (16 hex digits); None before the first write, while
        registering again after a loss, and after the end."""
        self.ttl = 0.0
        """The TTL the proxy granted, in seconds."""
        self.revision: int | None = None
        """The revision of the last write of the value."""
        self.lost = 0
        """How often the lease was lost (and the value written again)."""
        self.error: VaultkeyError | None = None
        """The last error of a keep-alive or a new registration (None once one succeeds)."""
        self._deadline = 0.0  # when the lease runs out, unless kept alive before

    def op_register(self) -> Plan:
        """Write the value with a new lease."""
        sent = self._clock()
        try:
            body = yield from self._ops.op_set(self.path, self._value, self._recipients,
                                               None, False, self._params)
            lease, ttl, revision = str(body["lease"]), _ttl_of(body), int(body["revision"])
        except (KeyError, TypeError, ValueError):
            lease = ""
        if not _LEASE_ID.fullmatch(lease):
            raise ProtocolError("the proxy's answer to a write with a TTL names no lease")
        self.lease, self.ttl, self.revision, self.error = lease, ttl, revision, None
        self._deadline = sent + ttl

    def plan(self) -> Plan:
        """Forever: a keep-alive every third of the TTL; a new registration when it is lost."""
        while True:
            yield Pause(self.ttl / 3)
            reason = yield from self._keep_alive()
            if reason is not None:
                self._report(reason)
                yield from self._register_again()

    def _keep_alive(self) -> Generator[Step, Response | None, str | None]:
        """Keep-alives until one succeeds (None) or the lease is lost (why)."""
        failures = 0
        while True:
            sent = self._clock()
            try:
                answer = yield Request("POST", f"/v1/leases/{self.lease}/keepalive")
                self._deadline, self.error = sent + _ttl_of(answer and answer.body), None
                return None
            except NotFound:
                return "the lease is gone (expired or revoked)"
            except (Unavailable, ProtocolError) as exc:
                self.error = exc
                left = self._deadline - self._clock()
                if left <= 0:
                    return f"the lease ran out while keep-alives failed: {exc.message}"
                yield Pause(min(backoff(failures, MAX_BACKOFF), left))
                failures += 1
            except VaultkeyError as exc:  # e.g. a revoked token: the lease will run out
                self.error = exc
                return f"a keep-alive was refused: {exc.message}"

    def _report(self, reason: str) -> None:
        self.lost += 1
        self.lease = None
        log.warning("vaultkey: the lease of %s was lost (%s); registering it again",
                    self.path, reason)
        if self._on_lost is not None:
            try:
                self._on_lost(reason)
            except Exception:
                log.exception("vaultkey: the on_lost callback of %s failed", self.path)

    def _register_again(self) -> Plan:
        failures = 0
        while True:
            try:
                yield from self.op_register()
            except VaultkeyError as exc:
                self.error = exc
                delay = backoff(failures, MAX_BACKOFF)
                failures += 1
                log.warning("vaultkey: registering %s again failed (%s); retrying in %.1f s",
                            self.path, exc.message, delay)
                yield Pause(delay)
            else:
                log.warning("vaultkey: %s is registered again, with lease %s", self.path,
                            self.lease)
                return

    def finish(self) -> Plan:
        """Revoke the lease: the key is deleted at once. Failing that, it runs out by itself."""
        lease, self.lease = self.lease, None
        if lease is None:
            return
        try:
            yield Request("DELETE", f"/v1/leases/{lease}")
        except NotFound:
            pass  # already gone
        except VaultkeyError as exc:
            log.warning("vaultkey: the lease of %s could not be revoked (%s); the key goes "
                        "when its TTL of %g s runs out", self.path, exc.message, self.ttl)


def _step(plan: Plan, reply: Response | None, error: VaultkeyError | None) -> Step | None:
    """The plan's next step after *reply* (or *error*); None when it is done."""
    try:
        return plan.send(reply) if error is None else plan.throw(error)
    except StopIteration:
        return None


class Registration(_Lease):
    """A value registered with a lease, kept alive by a thread (``with client.register(...)``).

    Entering writes it (errors raised there); leaving stops the keep-alives and revokes
    the lease. :attr:`lease`, :attr:`lost` and :attr:`error` tell how it goes meanwhile.
    """

    def __init__(self, wire: Transport, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wire = wire
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _drive(self, plan: Plan) -> None:
        reply: Response | None = None
        error: VaultkeyError | None = None
        while (step := _step(plan, reply, error)) is not None:
            reply, error = None, None
            if isinstance(step, Pause):
                if self._stop.wait(step.seconds):
                    return
                continue
            try:
                reply = self._wire.send(step)
            except VaultkeyError as exc:
                error = exc

    def _keep(self) -> None:
        try:
            self._drive(self.plan())
        except Exception:
            log.exception("vaultkey: the keep-alives of %s stopped", self.path)

    def __enter__(self) -> Registration:
        self._drive(self.op_register())
        self._thread = threading.Thread(target=self._keep, daemon=True,
                                        name=f"vaultkey-register {self.path}")
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the keep-alives and revoke the lease (the key goes at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._drive(self.finish())

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncRegistration(_Lease):
    """asyncio: the same as :class:`Registration` (``async with aclient.register(...)``),
    kept alive by a task."""

    def __init__(self, wire: AsyncTransport, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wire = wire
        self._task: asyncio.Task[None] | None = None

    async def _drive(self, plan: Plan) -> None:
        import asyncio

        reply: Response | None = None
        error: VaultkeyError | None = None
        while (step := _step(plan, reply, error)) is not None:
            reply, error = None, None
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                continue
            try:
                reply = await self._wire.send(step)
            except VaultkeyError as exc:
                error = exc

    async def _keep(self) -> None:
        try:
            await self._drive(self.plan())
        except Exception:
            log.exception("vaultkey: the keep-alives of %s stopped", self.path)

    async def __aenter__(self) -> AsyncRegistration:
        import asyncio

        await self._drive(self.op_register())
        self._task = asyncio.create_task(self._keep(), name=f"vaultkey-register {self.path}")
        return self

    async def aclose(self) -> None:
        """Stop the keep-alives and revoke the lease (the key goes at once)."""
        import asyncio

        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drive(self.finish())

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

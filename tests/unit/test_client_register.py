"""Writes with a TTL, and registrations: the keep-alive plan stepped by hand on a fake
clock, then Client/AsyncClient.register over an httpx MockTransport with short TTLs."""

from __future__ import annotations

import asyncio
import logging
import threading

import httpx
import pytest

import vaultkey
from tests._helpers.wait import wait_until
from vaultkey.client import AsyncClient, Client
from vaultkey.client._core import Operations
from vaultkey.client._register import Pause, _Lease
from vaultkey.client._transport import Request, Response
from vaultkey.client.settings import ClientSettings
from vaultkey.crypto import SecretKey

KEY = SecretKey.generate()
LEASE_A, LEASE_B = "00000000000000aa", "00000000000000bb"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def lease_of(clock: Clock, **kw: object) -> _Lease:
    ops = Operations(ClientSettings(), KEY)
    return _Lease(ops, "/svc/web/a", b"10.0.0.7", "30s", recipients=[KEY.public],
                  clock=clock, **kw)  # type: ignore[arg-type]


def granted(lease: str, ttl: float = 30, revision: int = 5) -> Response:
    return Response(200, {"path": "/svc/web/a", "revision": revision, "lease": lease,
                          "ttl": ttl})


def registered(reg: _Lease, clock: Clock) -> object:
    op = reg.op_register()
    put = next(op)
    assert (put.method, put.url, put.params) == ("PUT", "/v1/kv/svc/web/a", {"ttl": "30s"})
    with pytest.raises(StopIteration):
        op.send(granted(LEASE_A))
    plan = reg.plan()
    assert next(plan) == Pause(10.0)  # a third of the granted TTL
    clock.now += 10
    return plan


def keepalive(lease: str) -> Request:
    return Request("POST", f"/v1/leases/{lease}/keepalive")


def test_the_lease_is_kept_alive_every_third_of_its_ttl():
    clock = Clock()
    reg = lease_of(clock)
    plan = registered(reg, clock)
    assert (reg.lease, reg.ttl, reg.revision, reg.lost) == (LEASE_A, 30, 5, 0)
    for _ in range(3):
        assert plan.send(None) == keepalive(LEASE_A)
        assert plan.send(Response(200, {"lease": LEASE_A, "ttl": 30})) == Pause(10.0)
        clock.now += 10
    assert reg.lost == 0 and reg.error is None


def test_keepalives_that_cannot_reach_etcd_are_retried_until_the_ttl_runs_out(caplog):
    clock, reasons = Clock(), []
    reg = lease_of(clock, on_lost=reasons.append)
    plan = registered(reg, clock)
    step = plan.send(None)
    tries = 0
    while step == keepalive(LEASE_A):
        tries += 1
        step = plan.throw(vaultkey.Unavailable("etcd down"))
        if isinstance(step, Pause):
            assert 0 < step.seconds <= 7.5  # 5 s at most, times a jitter up to 1.5
            clock.now += step.seconds
            step = plan.send(None)
    assert clock.now == 30.0 and tries >= 6  # the last try at the lease's last moment
    assert reg.lost == 1 and reg.lease is None and "etcd down" in reasons[0]
    assert "lease of /svc/web/a was lost" in caplog.text
    assert step.method == "PUT" and step.params == {"ttl": "30s"}  # registered again
    assert plan.send(granted(LEASE_B, revision=9)) == Pause(10.0)
    assert (reg.lease, reg.revision, reg.error) == (LEASE_B, 9, None)


def test_a_lease_the_proxy_no_longer_knows_is_taken_again_at_once():
    clock, reasons = Clock(), []
    reg = lease_of(clock, on_lost=reasons.append)
    plan = registered(reg, clock)
    assert plan.send(None) == keepalive(LEASE_A)
    step = plan.throw(vaultkey.NotFound("no lease"))
    assert step.method == "PUT"
    assert reasons == ["the lease is gone (expired or revoked)"] and clock.now == 10


def test_a_failing_new_registration_is_retried_with_backoff_and_reported(caplog):
    clock = Clock()
    reg = lease_of(clock, on_lost=lambda reason: 1 / 0)  # a broken callback is only logged
    plan = registered(reg, clock)
    plan.send(None)
    assert plan.throw(vaultkey.NotFound("no lease")).method == "PUT"
    pauses = []
    for _ in range(4):
        pause = plan.throw(vaultkey.Unavailable("proxy down"))
        pauses.append(pause.seconds)
        assert plan.send(None).method == "PUT"
    assert isinstance(reg.error, vaultkey.Unavailable) and reg.lease is None
    assert pauses[-1] > pauses[0] and max(pauses) <= 7.5
    assert "registering /svc/web/a again failed (proxy down)" in caplog.text
    assert "on_lost callback" in caplog.text
    assert plan.send(granted(LEASE_B)) == Pause(10.0) and reg.lease == LEASE_B


def test_finish_revokes_and_tolerates_a_lease_that_is_gone(caplog):
    clock = Clock()
    reg = lease_of(clock)
    registered(reg, clock)
    done = reg.finish()
    assert next(done) == Request("DELETE", f"/v1/leases/{LEASE_A}")
    with pytest.raises(StopIteration):
        done.throw(vaultkey.NotFound("no lease"))
    assert reg.lease is None and list(reg.finish()) == []  # nothing left to revoke
    reg.lease = LEASE_B
    done = reg.finish()
    next(done)
    with caplog.at_level(logging.WARNING), pytest.raises(StopIteration):
        done.throw(vaultkey.Unavailable("proxy down"))
    assert "could not be revoked (proxy down)" in caplog.text


# -- over a transport -------------------------------------------------------------------

class LeaseServer:
    """A proxy's lease endpoints, in memory; answers 404 to keep-alives of *lose* once."""

    def __init__(self, ttl: float = 0.3) -> None:
        self.ttl, self.leases, self.log = ttl, [], []
        self.lose: str | None = None
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.log.append((request.method, request.url.path, dict(request.url.params)))
            if request.method == "PUT":
                self.leases.append(f"{len(self.leases) + 1:016x}")
                return httpx.Response(200, json={"path": "/svc/a", "revision": 3,
                                                 "lease": self.leases[-1], "ttl": self.ttl})
            lease = request.url.path.split("/")[3]
            if lease == self.lose:
                self.lose = None
                return httpx.Response(404, json={"error": {"code": "not_found",
                                                           "message": f"no lease {lease}"}})
            return httpx.Response(200, json={"lease": lease, "ttl": self.ttl, "revoked": True})

    def count(self, method: str, suffix: str = "") -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.log if m == method and p.endswith(suffix))


async def _answer(server: LeaseServer, request: httpx.Request) -> httpx.Response:
    return server(request)


def test_a_registration_keeps_its_lease_alive_takes_a_lost_one_again_and_revokes():
    server, reasons = LeaseServer(), []
    with Client("https://vk.test", "t", key=KEY, transport=httpx.MockTransport(server)) as vk:
        with vk.register("/svc/a", b"v", ttl=2, recipients=[KEY.public],
                         on_lost=reasons.append) as reg:
            assert reg.lease == "0000000000000001" and server.log[0][2] == {"ttl": "2"}
            assert wait_until(lambda: server.count("POST") >= 2)
            server.lose = reg.lease
            assert wait_until(lambda: reg.lease == "0000000000000002")
            assert reg.lost == 1 and reasons == ["the lease is gone (expired or revoked)"]
            assert wait_until(lambda: server.count("POST", "0000000000000002/keepalive") >= 1)
        assert server.log[-1][:2] == ("DELETE", "/v1/leases/0000000000000002")
        assert reg.lease is None


def test_an_async_registration_does_the_same():
    server = LeaseServer()

    async def run() -> None:
        transport = httpx.MockTransport(lambda r: _answer(server, r))
        async with AsyncClient("https://vk.test", "t", key=KEY, transport=transport) as vk, \
                vk.register("/svc/a", b"v", ttl="2s", recipients=[KEY.public]) as reg:
            assert reg.lease == "0000000000000001"
            while server.count("POST") < 2:
                await asyncio.sleep(0.01)
            server.lose = reg.lease
            while reg.lease != "0000000000000002":
                await asyncio.sleep(0.01)
            assert reg.lost == 1
        assert server.log[-1][:2] == ("DELETE", "/v1/leases/0000000000000002")

    asyncio.run(asyncio.wait_for(run(), 10))


def test_a_refused_first_write_is_raised_and_nothing_keeps_running():
    refuse = httpx.MockTransport(lambda r: httpx.Response(
        422, json={"error": {"code": "invalid_request", "message": "a TTL must be between 2 s "
                             "and 24 h"}}))
    before = threading.active_count()
    with Client("https://vk.test", "t", key=KEY, transport=refuse) as vk, \
            pytest.raises(vaultkey.UsageError, match="between 2 s and 24 h"), \
            vk.register("/svc/a", b"v", ttl=1, recipients=[KEY.public]):
        pass
    assert threading.active_count() == before


def test_set_with_a_ttl_or_a_lease_names_it_in_the_query():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        return httpx.Response(200, json={"path": "/a/b", "revision": 7, "lease": LEASE_A,
                                         "ttl": 30})

    with Client("https://vk.test", "t", key=KEY, transport=httpx.MockTransport(handler)) as vk:
        assert vk.set("/a/b", b"v", recipients=[KEY.public], ttl=30) == 7
        assert vk.set("/a/b", b"v", recipients=[KEY.public], ttl="5m") == 7
        assert vk.set("/a/b", b"v", recipients=[KEY.public], lease=LEASE_A) == 7
        assert vk.set("/a/b", b"v", recipients=[KEY.public]) == 7
        with pytest.raises(vaultkey.UsageError, match="not both"):
            vk.set("/a/b", b"v", recipients=[KEY.public], ttl=30, lease=LEASE_A)
        with pytest.raises(vaultkey.UsageError, match="ttl is seconds"):
            vk.set("/a/b", b"v", recipients=[KEY.public], ttl=2.5)  # type: ignore[arg-type]
    assert seen == [{"ttl": "30"}, {"ttl": "5m"}, {"lease": LEASE_A}, {}]


@pytest.mark.parametrize("answer", [granted("../../tokens"), granted(LEASE_A, ttl=0),
                                    Response(200, {"revision": 5})])
def test_an_answer_without_a_usable_lease_is_refused(answer):
    op = lease_of(Clock()).op_register()
    next(op)
    with pytest.raises((vaultkey.ProtocolError, vaultkey.NotFound)):
        op.send(answer)

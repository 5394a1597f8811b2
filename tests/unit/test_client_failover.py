"""Several proxy addresses (client/_failover.py): parsing, the classification of transport
errors (never sent or maybe sent), and failover through the real Transport, against real
local sockets: a port where nothing listens, and small servers that answer or hang up."""

from __future__ import annotations

import asyncio
import contextlib
import doctest
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

import vaultkey
from vaultkey.client import AsyncClient, Client, _failover
from vaultkey.client._failover import Failover, addrs_key, parse_addrs, sent_state
from vaultkey.client._lite import (
    LiteConnectError,
    LiteConnection,
    LiteRequestError,
    LiteTransportError,
)
from vaultkey.client._transport import Request, Transport
from vaultkey.client.settings import ClientSettings, resolve
from vaultkey.errors import OutcomeUnknown


class Server:
    """A loopback HTTP server thread. ``answer``: each request gets *status* and a JSON
    object, then the connection is closed; ``hang_up``: each request is read whole, then
    the connection is closed without a word; ``silent``: read, then nothing until closed."""

    def __init__(self, mode: str, status: int = 200) -> None:
        self.mode, self.status = mode, status
        self.requests: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            try:
                self._one(conn)
            except OSError:
                conn.close()

    def _one(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(v) for n, _, v in (line.partition(":") for line in lines[1:])
                       if n.strip().lower() == "content-length"), 0)
        while len(body) < length and (chunk := conn.recv(65536)):
            body += chunk
        self.requests.append(lines[0])
        if self.mode == "silent":
            self._held.append(conn)
            return
        if self.mode == "answer":
            payload = json.dumps({"ok": True} if self.status == 200 else {
                "error": {"code": "unavailable", "message": "busy"}}).encode()
            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nConnection: close"
                         b"\r\nContent-Length: %d\r\n\r\n" % (self.status, len(payload)) + payload)
        conn.close()

    def close(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def server() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(mode: str, status: int = 200) -> Server:
        started.append(Server(mode, status))
        return started[-1]

    yield start
    for s in started:
        s.close()


@pytest.fixture
def dead() -> Iterator[str]:
    """An address where nothing listens: a port bound (so no one else takes it), not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _client(*addrs: str, retries: int = 3, timeout: float = 10.0) -> Client:
    return Client(list(addrs), "t", retries=retries, timeout=timeout)


def _lite(*addrs: str, timeout: float = 10.0) -> Transport:
    return Transport(ClientSettings(addr=",".join(addrs), token="t", timeout=timeout), lite=True)


# -- addresses --------------------------------------------------------------------------

def test_module_docstring_example_runs():
    result = doctest.testmod(_failover, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize(("given", "addrs"), [
    ("https://a:8443", ("https://a:8443",)),
    ("https://a:8443,https://b:8443", ("https://a:8443", "https://b:8443")),
    (" https://a:8443 , http://127.0.0.1:1 ", ("https://a:8443", "http://127.0.0.1:1")),
    (["https://a:8443", "https://b:8443"], ("https://a:8443", "https://b:8443")),
])
def test_an_address_list_is_commas_or_a_list(given, addrs):
    assert parse_addrs(given) == addrs


@pytest.mark.parametrize(("given", "message"), [
    ("https://a:8443,,https://b:8443", "empty item"),
    ("https://a:8443,", "empty item"),
    (",https://a:8443", "empty item"),
    ("https://a:8443,https://a:8443/", "https://a:8443/ is given twice"),
    ("https://a:8443,HTTPS://A:8443", "given twice"),
    ("https://a:8443/vk,https://a:8443/VK", None),  # paths differ
    ("https://a:8443,http://10.0.0.5:8443", "refusing to send a token over plain HTTP"),
    ("https://a:8443,a:8443", "bad proxy address"),
    ("", "bad proxy address"),
])
def test_bad_address_lists_are_usage_errors_before_anything_is_sent(given, message):
    if message is None:
        assert len(parse_addrs(given)) == 2
        return
    with pytest.raises(vaultkey.UsageError, match=message):
        parse_addrs(given)
    with pytest.raises(vaultkey.UsageError, match=message):
        Client(given, "t")


def test_every_source_of_addr_takes_a_list():
    with Client(["https://a:1", "https://b:2"], "t") as vk:
        assert vk.settings.addr == "https://a:1,https://b:2"
        assert vk._wire.failover.addrs == ("https://a:1", "https://b:2")
    env = {"VAULTKEY_ADDR": "https://a:1,https://b:2"}
    assert resolve({}, env=env, config_path="/dev/null").addr == "https://a:1,https://b:2"
    aclient = AsyncClient(("https://a:1", "https://b:2"), "t")
    assert aclient._wire.failover.addrs == ("https://a:1", "https://b:2")
    asyncio.run(aclient.aclose())


def test_rollback_marks_are_kept_per_normalised_address_list():
    assert addrs_key("https://a:1") == "https://a:1"  # one address: as today
    assert addrs_key(" https://a:1 , https://b:2") == "https://a:1,https://b:2"
    assert addrs_key(["https://a:1", "https://b:2"]) == "https://a:1,https://b:2"
    with Client("https://a:1, https://b:2", "t") as vk:
        assert vk._ops.marks.scope == "https://a:1,https://b:2"


def test_the_current_address_moves_round_robin_and_once_per_failure():
    failover = Failover(("https://a", "https://b", "https://c"))
    assert failover.order() == [0, 1, 2]
    failover.failed(0, "refused")
    failover.failed(0, "refused")  # seen by a second request: already moved
    assert (failover.current, failover.order()) == (1, [1, 2, 0])
    failover.answered(1, 404)
    assert failover.current == 1
    failover.answered(1, 503)
    failover.failed(2, "reset")
    assert failover.current == 0  # round robin
    single = Failover(("https://a",))
    single.failed(0, "refused")
    assert single.current == 0


# -- what a transport error says about the request --------------------------------------

def test_httpx_refused_connection_was_never_sent(dead):
    with httpx.Client(base_url=dead, timeout=5) as http, pytest.raises(httpx.TransportError) as e:
        http.get("/")
    assert sent_state(e.value) == "connect"


def test_httpx_connection_closed_without_an_answer_may_have_been_sent(server):
    s = server("hang_up")
    with httpx.Client(base_url=s.addr, timeout=5) as http, \
            pytest.raises(httpx.TransportError) as e:
        http.put("/v1/kv/a", content=b"x")
    assert s.requests == ["PUT /v1/kv/a HTTP/1.1"]
    assert sent_state(e.value) == "sent"


def test_httpx_answer_that_never_comes_may_have_been_sent(server):
    s = server("silent")
    with httpx.Client(base_url=s.addr, timeout=0.5) as http, \
            pytest.raises(httpx.ReadTimeout) as e:
        http.put("/v1/kv/a", content=b"x")
    assert sent_state(e.value) == "sent"


def test_httpx_errors_raised_before_sending_are_local():
    assert sent_state(httpx.PoolTimeout("no free connection")) == "local"
    assert sent_state(httpx.LocalProtocolError("bad header")) == "local"


def test_lite_refused_connection_is_a_connect_error(dead):
    conn = LiteConnection(base_url=dead, verify=ssl.create_default_context(), headers={},
                          timeout=5)
    with pytest.raises(LiteConnectError) as e:
        conn.request("PUT", "/v1/kv/a", content=b"x")
    assert sent_state(e.value) == "connect"


def test_lite_connection_closed_without_an_answer_may_have_been_sent(server):
    s = server("hang_up")
    conn = LiteConnection(base_url=s.addr, verify=ssl.create_default_context(), headers={},
                          timeout=5)
    with pytest.raises(LiteTransportError) as e:
        conn.request("PUT", "/v1/kv/a", content=b"x")
    assert not isinstance(e.value, LiteConnectError)
    assert sent_state(e.value) == "sent"
    assert s.requests == ["PUT /v1/kv/a HTTP/1.1"]  # sent once, never again


def test_lite_request_refused_before_sending_is_local():
    conn = LiteConnection(base_url="http://127.0.0.1:1", verify=ssl.create_default_context(),
                          headers={}, timeout=5)
    with pytest.raises(LiteRequestError) as e:
        conn.request("GET", "/a b")
    assert sent_state(e.value) == "local"


# -- failover through the Transport -----------------------------------------------------

@pytest.mark.parametrize("lite", [False, True], ids=["httpx", "lite"])
def test_a_write_that_never_left_goes_to_the_next_address_which_stays_current(
        dead, server, lite):
    live = server("answer")
    wire = _lite(dead, live.addr) if lite else _client(dead, live.addr)._wire
    try:
        for _ in range(2):
            assert wire.send(Request("PUT", "/v1/kv/a", content=b"x")).body == {"ok": True}
        assert wire.failover.current == 1
        assert live.requests == ["PUT /v1/kv/a HTTP/1.1"] * 2
    finally:
        wire.close()


@pytest.mark.parametrize("lite", [False, True], ids=["httpx", "lite"])
def test_a_write_whose_answer_was_lost_is_outcome_unknown_and_never_resent(server, lite):
    cut, live = server("hang_up"), server("answer")
    wire = _lite(cut.addr, live.addr) if lite else _client(cut.addr, live.addr)._wire
    try:
        with pytest.raises(OutcomeUnknown) as e:
            wire.send(Request("PUT", "/v1/kv/a", content=b"x"))
        assert cut.addr in e.value.message and "may or may not have been applied" in \
            e.value.message
        assert not e.value.retryable and e.value.exit_code == 15
        assert (cut.requests, live.requests) == (["PUT /v1/kv/a HTTP/1.1"], [])
        # the next request goes to the other replica
        assert wire.send(Request("DELETE", "/v1/kv/a")).body == {"ok": True}
        assert live.requests == ["DELETE /v1/kv/a HTTP/1.1"]
    finally:
        wire.close()


def test_the_async_client_fails_over_alike(dead, server):
    cut, live = server("hang_up"), server("answer")

    async def main() -> None:
        async with AsyncClient([dead, live.addr], "t") as vk:
            assert await vk.request("PUT", "/v1/kv/a", json={}) == {"ok": True}
        async with AsyncClient([cut.addr, live.addr], "t") as vk:
            with pytest.raises(OutcomeUnknown):
                await vk.request("PUT", "/v1/kv/b", json={})
            assert await vk.request("GET", "/v1/whoami") == {"ok": True}

    asyncio.run(main())
    assert cut.requests == ["PUT /v1/kv/b HTTP/1.1"]
    assert live.requests == ["PUT /v1/kv/a HTTP/1.1", "GET /v1/whoami HTTP/1.1"]


def test_a_write_whose_answer_was_lost_with_one_address_is_outcome_unknown_too(server):
    cut = server("hang_up")
    with _client(cut.addr) as vk, pytest.raises(OutcomeUnknown):
        vk.request("POST", "/v1/leases/00/keepalive")
    assert cut.requests == ["POST /v1/leases/00/keepalive HTTP/1.1"]


@pytest.mark.parametrize("mode", ["hang_up", "503"])
def test_a_read_is_retried_on_the_next_address(server, mode):
    bad = server("answer", 503) if mode == "503" else server("hang_up")
    live = server("answer")
    with _client(bad.addr, live.addr) as vk:
        assert vk.request("GET", "/v1/whoami") == {"ok": True}
        assert (bad.requests, live.requests) == (["GET /v1/whoami HTTP/1.1"],) * 2
        assert vk._wire.failover.current == 1


def test_a_write_answered_503_is_raised_and_the_next_request_goes_elsewhere(server):
    busy, live = server("answer", 503), server("answer")
    with _client(busy.addr, live.addr) as vk:
        with pytest.raises(vaultkey.Unavailable, match="busy") as e:
            vk.request("PUT", "/v1/kv/a", json={})
        assert not isinstance(e.value, OutcomeUnknown)
        assert live.requests == []
        assert vk.request("PUT", "/v1/kv/a", json={}) == {"ok": True}


@pytest.mark.parametrize("lite", [False, True], ids=["httpx", "lite"])
def test_no_address_reachable_names_every_address_tried(lite):
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(2):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        addrs = [f"http://127.0.0.1:{p}" for p in ports]
        settings = ClientSettings(addr=",".join(addrs), token="t", retries=0)
        wire = Transport(settings, lite=lite)
        with pytest.raises(vaultkey.Unavailable) as e:
            wire.send(Request("PUT", "/v1/kv/a", content=b"x"))
        wire.close()
    assert not isinstance(e.value, OutcomeUnknown)
    assert "at any of 2 addresses" in e.value.message
    assert all(addr in e.value.message for addr in addrs)


def test_one_unreachable_address_reads_as_before(dead):
    with _client(dead, retries=0) as vk, pytest.raises(vaultkey.Unavailable) as e:
        vk.request("GET", "/v1/whoami")
    assert e.value.message.startswith(f"cannot reach the vaultkey proxy at {dead}: ")


def test_a_certificate_that_does_not_verify_is_not_routed_around(server, tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError), listener:
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
                pass

    threading.Thread(target=serve, daemon=True).start()
    live = server("answer")
    untrusted = f"https://127.0.0.1:{listener.getsockname()[1]}"
    with _client(untrusted, live.addr) as vk, pytest.raises(vaultkey.Unavailable) as e:
        vk.request("GET", "/v1/whoami")
    listener.close()
    assert e.value.message.startswith(f"TLS verification of {untrusted} failed")
    assert not e.value.retryable
    assert live.requests == [] and vk._wire.failover.current == 0

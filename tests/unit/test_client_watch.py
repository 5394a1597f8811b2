"""The SDK's watch without a network: the SSE parser, and Client/AsyncClient.watch over an
httpx MockTransport that serves canned streams (cut, resynced, revoked, refused)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

import vaultkey
from vaultkey.client import AsyncClient, Client, WatchEvent
from vaultkey.client._sse import SseMessage, SseParser
from vaultkey.client._watch import WatchSession
from vaultkey.crypto import SecretKey, encrypt

KEY = SecretKey.generate()
STRANGER = SecretKey.generate()

# -- the parser -------------------------------------------------------------------------

STREAM = ("\ufeffevent: put\r\nid: 7\r\ndata: {\"a\":\"é€😀\"}\r\n\r\n"
          ": heartbeat\n\n"
          "event: delete\rdata: one\rdata:two\r\r"
          "data\nid\n\n"
          "retry: 100\nevent: bookmark\nid: 9\ndata: {}\n\n").encode()
MESSAGES = [SseMessage("put", '{"a":"é€😀"}', "7"), SseMessage("delete", "one\ntwo", None),
            SseMessage("message", "", ""), SseMessage("bookmark", "{}", "9")]


def _parse(chunks: list[bytes]) -> list[SseMessage]:
    parser = SseParser()
    return [m for chunk in chunks for m in parser.feed(chunk)]


def test_the_parser_reads_a_whole_stream():
    assert _parse([STREAM]) == MESSAGES


def test_the_parser_gives_the_same_messages_whatever_the_chunk_boundaries():
    assert _parse([STREAM[i:i + 1] for i in range(len(STREAM))]) == MESSAGES
    for cut in range(len(STREAM)):  # every two-chunk split: inside \r\n, inside a character
        assert _parse([STREAM[:cut], STREAM[cut:]]) == MESSAGES, cut
    rng = random.Random(9)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(STREAM)), 6))
        bounds = [0, *cuts, len(STREAM)]
        assert _parse([STREAM[a:b] for a, b in itertools.pairwise(bounds)]) == MESSAGES


def test_the_parser_keeps_an_unfinished_message_for_later():
    parser = SseParser()
    assert parser.feed(b"event: put\ndata: x") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\n") == [SseMessage("put", "x", None)]


def test_the_parser_refuses_an_endless_message(monkeypatch):
    monkeypatch.setattr("vaultkey.client._sse.MAX_MESSAGE_CHARS", 100)
    parser = SseParser()
    parser.feed(b"data: " + b"x" * 60 + b"\n")
    with pytest.raises(vaultkey.ProtocolError, match="over 100 characters"):
        parser.feed(b"data: " + b"x" * 60)


# -- canned streams ---------------------------------------------------------------------

def sse(event: str, data: dict[str, object], rev: int | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {rev}\n" if rev is not None else "")
    return (head + f"data: {json.dumps(data)}\n\n").encode()


def put(path: str, value: bytes, rev: int, last: bool = True, key: SecretKey = KEY) -> bytes:
    blob = base64.b64encode(encrypt(value, path, [key.public])).decode()
    return sse("put", {"type": "put", "path": path, "revision": rev, "envelope": blob,
                       "create_revision": rev, "version": 1, "lease": None},
               rev if last else None)


def delete(path: str, rev: int, last: bool = True) -> bytes:
    return sse("delete", {"type": "delete", "path": path, "revision": rev},
               rev if last else None)


def bookmark(rev: int) -> bytes:
    return sse("bookmark", {"type": "bookmark", "revision": rev}, rev)


def resync(reason: str, rev: int) -> bytes:
    return sse("resync", {"type": "resync", "reason": reason, "revision": rev})


class Cut(httpx.ReadError):
    def __init__(self) -> None:
        super().__init__("connection reset")


def _body(parts: list[bytes | type[Exception]]) -> Iterator[bytes]:
    for part in parts:
        if isinstance(part, bytes):
            yield part
        else:
            raise part()


class Server:
    """Serves one canned answer per request; records each request's resume point."""

    def __init__(self, *answers: list[bytes | type[Exception]] | httpx.Response) -> None:
        self.answers = list(answers)
        self.since: list[str | None] = []

    def _answer(self, request: httpx.Request) -> httpx.Response | list[bytes | type[Exception]]:
        self.since.append(request.url.params.get("since"))
        assert request.url.path == "/v1/watch/app/"
        assert request.headers["authorization"] == "Bearer t"
        return self.answers.pop(0)

    def sync(self, request: httpx.Request) -> httpx.Response:
        answer = self._answer(request)
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=_body(answer))

    async def asynchronous(self, request: httpx.Request) -> httpx.Response:
        answer = self._answer(request)
        if isinstance(answer, httpx.Response):
            return answer

        async def body() -> object:
            for chunk in _body(answer):
                yield chunk

        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=body())


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The watch's pauses between connections, recorded instead of waited."""
    slept: list[float] = []

    async def asleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("vaultkey.client._watch.time.sleep", slept.append)
    monkeypatch.setattr("asyncio.sleep", asleep)
    return slept


def watch(server: Server, n: int, **kw: object) -> list[WatchEvent]:
    transport = httpx.MockTransport(server.sync)
    with Client("https://vk.test", "t", key=KEY, transport=transport) as vk, \
            vk.watch("/app", **kw) as changes:
        return [next(changes) for _ in range(n)]


def awatch(server: Server, n: int, **kw: object) -> list[WatchEvent]:
    async def run() -> list[WatchEvent]:
        transport = httpx.MockTransport(server.asynchronous)
        async with AsyncClient("https://vk.test", "t", key=KEY, transport=transport) as vk, \
                vk.watch("/app/", **kw) as changes:
            return [await anext(changes) for _ in range(n)]

    return asyncio.run(run())


BOTH = pytest.mark.parametrize("run", [watch, awatch], ids=["sync", "async"])


def brief(events: list[WatchEvent]) -> list[tuple[object, ...]]:
    return [(e.type, e.path, e.revision, e.value, e.reason) for e in events]


@BOTH
def test_puts_are_decrypted_deletes_follow_in_order_and_bookmarks_are_not_events(run):
    server = Server([bookmark(3), put("/app/a", b"A", 4), bookmark(4), delete("/app/a", 6)])
    events = run(server, 2)
    assert brief(events) == [("put", "/app/a", 4, b"A", None), ("delete", "/app/a", 6, None, None)]
    assert events[0].version == 1 and events[0].create_revision == 4 and events[0].error is None
    assert server.since == [None]


@BOTH
def test_a_cut_stream_is_resumed_after_the_last_id_seen(run, sleeps):
    server = Server([bookmark(3), put("/app/a", b"A", 4), bookmark(5), Cut],
                    [bookmark(5), put("/app/b", b"B", 7)])
    assert brief(run(server, 2)) == [("put", "/app/a", 4, b"A", None),
                                     ("put", "/app/b", 7, b"B", None)]
    assert server.since == [None, "5"]
    assert len(sleeps) == 1 and 0.05 <= sleeps[0] <= 0.15


@BOTH
def test_a_revision_cut_in_the_middle_is_replayed_without_duplicates(run, sleeps):
    # a lease revoked with three keys: one revision, only its last event carries id:
    first = [bookmark(8), delete("/app/x", 9, last=False), delete("/app/y", 9, last=False), Cut]
    again = [delete("/app/x", 9, last=False), delete("/app/y", 9, last=False),
             delete("/app/z", 9), put("/app/n", b"N", 10)]
    server = Server(first, again)
    assert [(e.path, e.revision) for e in run(server, 4)] == [
        ("/app/x", 9), ("/app/y", 9), ("/app/z", 9), ("/app/n", 10)]
    assert server.since == [None, "8"]


@BOTH
def test_the_given_since_is_the_first_resume_point_and_503_is_retried(run, sleeps):
    busy = httpx.Response(503, headers={"retry-after": "2"},
                          json={"error": {"code": "unavailable", "message": "etcd down"}})
    server = Server(busy, [put("/app/a", b"A", 12)])
    assert brief(run(server, 1, since=11)) == [("put", "/app/a", 12, b"A", None)]
    assert server.since == ["11", "11"]
    assert sleeps == [2.0]  # Retry-After, as the proxy asked


@BOTH
def test_a_resync_is_an_event_and_the_watch_goes_on_after_its_revision(run, sleeps):
    server = Server([bookmark(3), resync("compacted", 40)], [put("/app/a", b"A", 41)])
    events = run(server, 2)
    assert brief(events) == [("resync", "/app/", 40, None, "compacted"),
                             ("put", "/app/a", 41, b"A", None)]
    assert server.since == [None, "40"]
    assert sleeps == [0.0]  # a working stream that asked for a resync: back at once


@BOTH
def test_a_replica_that_restarts_is_left_for_another_from_the_same_point(run, sleeps):
    server = Server([bookmark(3), put("/app/a", b"A", 4), resync("restarted", 4)],
                    [put("/app/b", b"B", 5)])
    assert [e.type for e in run(server, 2)] == ["put", "put"]
    assert server.since == [None, "4"]


@BOTH
def test_a_value_that_does_not_decrypt_is_an_event_with_the_error(run):
    server = Server([put("/app/a", b"A", 4, key=STRANGER), put("/app/b", b"B", 5)])
    bad, good = run(server, 2)
    assert bad.type == "put" and bad.value is None
    assert isinstance(bad.error, vaultkey.DecryptionError) and "/app/a" in bad.error.message
    assert good.value == b"B"


@BOTH
def test_a_revoked_token_ends_the_watch(run):
    server = Server([put("/app/a", b"A", 4), sse("revoked", {"type": "revoked"})])
    with pytest.raises(vaultkey.Unauthenticated, match="revoked"):
        run(server, 2)
    assert len(server.since) == 1


@BOTH
def test_a_refused_watch_is_raised_not_retried(run):
    server = Server(httpx.Response(403, json={"error": {
        "code": "permission_denied", "message": "group 'g' may not watch /app/"}}))
    with pytest.raises(vaultkey.PermissionDenied, match="may not watch"):
        run(server, 1)


@BOTH
def test_an_event_outside_the_prefix_is_a_protocol_error(run):
    server = Server([put("/application/a", b"A", 4)])
    with pytest.raises(vaultkey.ProtocolError, match="outside /app/"):
        run(server, 1)


@BOTH
def test_an_answer_that_is_not_a_stream_is_a_protocol_error(run):
    server = Server(httpx.Response(200, json={"hello": "portal"}))
    with pytest.raises(vaultkey.ProtocolError, match="did not answer like a vaultkey proxy"):
        run(server, 1)


def test_without_decryption_no_key_is_needed():
    server = Server([put("/app/a", b"A", 4)])
    transport = httpx.MockTransport(server.sync)
    with Client("https://vk.test", "t", transport=transport) as vk:
        with pytest.raises(vaultkey.UsageError, match="no secret key"):
            vk.watch("/app/")
        event = next(iter(vk.watch("/app/", decrypt=False)))
    assert (event.type, event.path, event.value, event.error) == ("put", "/app/a", None, None)


def _session() -> WatchSession:
    return WatchSession(None, "/app/", None, decrypt=False)  # type: ignore[arg-type]


def test_backoff_doubles_to_five_seconds_and_starts_over_once_a_stream_works(monkeypatch):
    monkeypatch.setattr("vaultkey.client._transport.random.random", lambda: 0.5)
    session = _session()
    down = vaultkey.Unavailable("refused")
    assert [session.retry_delay(down) for _ in range(8)] == [
        0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    session.request()
    list(session.feed(bookmark(3)))
    assert session.retry_delay(down) == 0.1 and session.revision == 3


def test_an_error_retrying_cannot_help_is_raised():
    tls = vaultkey.Unavailable("certificate verify failed", retryable=False)
    with pytest.raises(vaultkey.Unavailable, match="certificate"):
        _session().retry_delay(tls)


def test_the_public_names_are_importable():
    from vaultkey.client import AsyncRegistration, AsyncWatch, Registration, Watch

    assert all(isinstance(c, type) for c in (AsyncRegistration, AsyncWatch, Registration, Watch))
    assert "secret" not in repr(WatchEvent("put", "/a/b", 1, value=b"secret"))


class _Sse(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = bookmark(3) + put("/app/a", b"over a socket", 4)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_clis_http_client_streams_with_httpx_over_a_real_socket():
    from vaultkey._cli._client import CliClient

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sse)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    try:
        with CliClient(f"http://127.0.0.1:{server.server_port}", "t", key=KEY) as vk, \
                vk.watch("/app/") as changes:
            event = next(changes)
    finally:
        server.shutdown()
        server.server_close()
    assert (event.path, event.revision, event.value) == ("/app/a", 4, b"over a socket")

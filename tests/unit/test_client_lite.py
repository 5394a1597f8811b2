"""The CLI's stdlib HTTP client (client/_lite.py) against a real local socket server."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from vaultkey.client._lite import LiteConnection, LiteTransportError

BODY = b'{"ok":true}'
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY


def _server(requests_per_connection: int, connections: int) -> tuple[int, list[bytes]]:
    """Answers N requests per connection, then closes it without saying so (idle close)."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        with listener:
            for _ in range(connections):
                conn, _addr = listener.accept()
                with conn:
                    for _ in range(requests_per_connection):
                        data = conn.recv(65536)
                        seen.append(data.split(b"\r\n", 1)[0])
                        conn.sendall(ANSWER)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], seen


def _lite(port: int, base: str = "") -> LiteConnection:
    return LiteConnection(base_url=f"http://127.0.0.1:{port}{base}",
                          verify=ssl.create_default_context(), headers={}, timeout=5)


def test_a_kept_alive_connection_closed_by_the_server_is_reopened_once():
    port, seen = _server(requests_per_connection=1, connections=2)
    conn = _lite(port)
    assert conn.request("GET", "/v1/whoami").status_code == 200
    assert conn.request("PUT", "/v1/kv/a", content=b"x").json() == {"ok": True}
    assert seen == [b"GET /v1/whoami HTTP/1.1", b"PUT /v1/kv/a HTTP/1.1"]
    conn.close()


def test_a_fresh_connection_that_fails_is_not_resent():
    port, seen = _server(requests_per_connection=0, connections=1)
    with pytest.raises(LiteTransportError):
        _lite(port).request("PUT", "/v1/kv/a", content=b"x")
    assert seen == []


def test_the_address_path_prefixes_requests_like_httpx():
    port, seen = _server(requests_per_connection=1, connections=1)
    _lite(port, "/vault/").request("GET", "/v1/whoami", params={"list": "true"})
    assert seen == [b"GET /vault/v1/whoami?list=true HTTP/1.1"]


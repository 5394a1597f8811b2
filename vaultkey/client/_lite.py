"""A minimal HTTP/1.1 client on sockets, for the CLI's short-lived processes.

``httpx`` costs ~40 ms to import, a third of a whole ``vaultkey get``, and even
:mod:`http.client` pulls in the :mod:`email` package to parse headers. The CLI
makes one or two requests per process to a vaultkey proxy, so it speaks the
small part of HTTP/1.1 this needs (``Content-Length``, ``chunked`` or
read-to-close bodies) directly over :mod:`socket` and :mod:`ssl`, on one
keep-alive connection; the long-lived SDK clients keep httpx.
It never uses a forward proxy: where one is configured for an ``https://``
address, the CLI takes httpx too (:func:`vaultkey.client._transport.proxy_configured`).
A connection that could not be made raises :class:`LiteConnectError` (nothing was
sent: :mod:`vaultkey.client._failover` tries the next address), a failure after
sending :class:`LiteTransportError` itself.
Same interface as the part of ``httpx.Client`` the SDK uses::

    conn = LiteConnection(base_url="https://127.0.0.1:8443", verify=ssl_context,
                          headers={"Authorization": "Bearer ..."}, timeout=10)
    response = conn.request("GET", "/v1/whoami")   # .status_code, .headers, .json()
"""

from __future__ import annotations

import json as _json
import socket
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    import ssl

# As http.client: no line (status, header, chunk size) over 64 KiB, at most 100 headers.
_MAX_LINE = 65536
_MAX_HEADERS = 100
_NO_BODY_STATUS = (204, 304)
_METHODS_EXPECTING_BODY = ("PATCH", "POST", "PUT")
# What may never appear in a request target or a header (request splitting).
_BAD_TARGET = frozenset(map(chr, [*range(0x21), 0x7F]))
_BAD_VALUE = frozenset("\r\n\x00")
_HEX_DIGITS = b"0123456789abcdefABCDEF"


class LiteTransportError(Exception):
    """The request could not be sent or its answer not read (connection, TLS, protocol).

    Raised as such, the request may have reached the server (a write may have been
    applied); the subclasses say when it surely did not."""


class LiteConnectError(LiteTransportError):
    """The connection could not be made (refused, timeout, unknown host, TLS handshake):
    nothing was sent (another address may be tried at once)."""


class LiteRequestError(LiteTransportError):
    """The request was refused here, before anything was sent."""


class _RemoteDisconnected(ConnectionResetError):
    """The server closed the connection without answering (like http.client's)."""


class _ProtocolError(Exception):
    """The answer is not HTTP/1.x as this client reads it."""


# A kept-alive connection the server closed while idle fails with one of these.
_STALE = (BrokenPipeError, ConnectionResetError)


class LiteResponse:
    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return _json.loads(self.content)


class LiteConnection:
    def __init__(self, *, base_url: str, verify: ssl.SSLContext, headers: dict[str, str],
                 timeout: float) -> None:
        parts = urlsplit(base_url)
        self._base_path = parts.path.rstrip("/")  # like httpx's base_url
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        default_port = 443 if self._tls else 80
        self._port = parts.port or default_port
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if self._port == default_port else f"{host}:{self._port}"
        self._context = verify
        self._headers = headers
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._used = False  # has the current connection answered a request already?

    def request(self, method: str, url: str, *, params: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, content: bytes | None = None,
                json: Any = None) -> LiteResponse:
        target = self._base_path + url + ("?" + urlencode(params) if params else "")
        if _BAD_TARGET.intersection(target) or _BAD_TARGET.intersection(method):
            raise LiteRequestError(f"invalid request target {target!r}")
        all_headers = {**self._headers, **(headers or {})}
        body = content
        if json is not None:
            body = _json.dumps(json).encode()
            all_headers["Content-Type"] = "application/json"
        message = self._message(method, target, all_headers, body)
        reused = self._used
        try:
            return self._exchange(method, message)
        except _STALE as exc:
            # A kept-alive connection the server closed while idle fails before the server
            # read anything, so sending again on a fresh connection is safe (as httpx does).
            self.close()
            if not reused:
                raise LiteTransportError(str(exc) or type(exc).__name__) from exc
        try:
            return self._exchange(method, message)
        except (OSError, _ProtocolError) as exc:
            self.close()
            raise LiteTransportError(str(exc) or type(exc).__name__) from exc

    def _message(self, method: str, target: str, headers: dict[str, str],
                 body: bytes | None) -> bytes:
        """The request's bytes: request line, headers (as http.client sends them), body."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}"]
        names = {name.lower() for name in headers}
        if "accept-encoding" not in names:
            lines.append("Accept-Encoding: identity")
        if "content-length" not in names and (body is not None
                                              or method in _METHODS_EXPECTING_BODY):
            lines.append(f"Content-Length: {len(body or b'')}")
        for name, value in headers.items():
            if not name or _BAD_TARGET.intersection(name) or ":" in name:
                raise ValueError(f"invalid header name {name!r}")
            if _BAD_VALUE.intersection(value):
                raise ValueError(f"invalid value of header {name!r}")  # never echo it
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + body if body else head

    def _exchange(self, method: str, message: bytes) -> LiteResponse:
        reader = self._connect()
        try:
            assert self._sock is not None
            self._sock.sendall(message)
            status, headers, will_close = _read_head(reader)
            content = _read_body(reader, method, status, headers)
        except _STALE:
            raise
        except (OSError, _ProtocolError) as exc:
            self.close()
            raise LiteTransportError(str(exc) or type(exc).__name__) from exc
        if will_close or not _delimited(status, headers):
            self.close()  # the next request opens a fresh connection
        else:
            self._used = True
        return LiteResponse(status, headers, content)

    def _connect(self) -> BinaryIO:
        """The reader of the open connection, or of a new one (:class:`LiteConnectError`
        if it cannot be made: then nothing was sent)."""
        if self._reader is None:
            try:
                self._open()
            except OSError as exc:
                self.close()
                raise LiteConnectError(str(exc) or type(exc).__name__) from exc
        assert self._reader is not None
        return self._reader

    def _open(self) -> None:
        # An ASCII host (an IP address, most names) goes as bytes, which socket and ssl
        # take as they are: a str would be encoded with the idna codec, ~1 ms to import.
        host: str | bytes = self._host.encode() if self._host.isascii() else self._host
        sock = socket.create_connection((host, self._port),  # type: ignore[arg-type]
                                        self._timeout)  # (typeshed: str only)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls:
                sock = self._context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._reader = sock.makefile("rb")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._used = False


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise _ProtocolError("line too long in the answer")
    return line


def _read_head(reader: BinaryIO) -> tuple[int, dict[str, str], bool]:
    """Status, headers (names in lower case; the last of repeated ones) and whether the
    server closes the connection after this answer. Interim 1xx answers are skipped."""
    while True:
        line = _line(reader)
        if not line:
            raise _RemoteDisconnected("remote end closed connection without response")
        version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit() \
                or rest[3:4] not in ("", " "):
            raise _ProtocolError(f"bad status line {line[:80]!r}")
        headers = _read_headers(reader)
        status = int(code)
        if not 100 <= status < 200 or status == 101:
            break
    connection = headers.get("connection", "").lower()
    will_close = "close" in connection or (version == "HTTP/1.0"
                                           and "keep-alive" not in connection)
    return status, headers, will_close


def _read_headers(reader: BinaryIO) -> dict[str, str]:
    headers: dict[str, str] = {}
    name = ""
    for _ in range(_MAX_HEADERS + 1):
        line = _line(reader).decode("latin-1")
        if line in ("\r\n", "\n", ""):
            return headers
        if line[0] in " \t" and name:  # an obsolete folded continuation line
            headers[name] += " " + line.strip()
            continue
        raw_name, sep, value = line.partition(":")
        if not sep:
            raise _ProtocolError(f"bad header line {line[:80]!r}")
        name = raw_name.strip().lower()
        headers[name] = value.strip()
    raise _ProtocolError(f"more than {_MAX_HEADERS} headers in the answer")


def _chunked(headers: dict[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


def _delimited(status: int, headers: dict[str, str]) -> bool:
    """Does the answer's body end by itself (so the connection can carry another request)?"""
    return status in _NO_BODY_STATUS or _chunked(headers) or "content-length" in headers


def _read_body(reader: BinaryIO, method: str, status: int, headers: dict[str, str]) -> bytes:
    if method == "HEAD" or status in _NO_BODY_STATUS:
        return b""
    if _chunked(headers):
        return _read_chunked(reader)
    length = headers.get("content-length")
    if length is None:
        return reader.read()  # the server closes the connection to end the body
    if not (length.isascii() and length.isdigit()):
        raise _ProtocolError(f"bad Content-Length {length[:40]!r}")
    return _read_exactly(reader, int(length))


def _read_exactly(reader: BinaryIO, n: int) -> bytes:
    data = reader.read(n)
    if len(data) != n:
        raise _ProtocolError(f"incomplete answer: {len(data)} of {n} bytes read")
    return data


def _read_chunked(reader: BinaryIO) -> bytes:
    parts = []
    while True:
        size_text = _line(reader).split(b";", 1)[0].strip()
        if not size_text or size_text.strip(_HEX_DIGITS):
            raise _ProtocolError(f"bad chunk size {size_text[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        parts.append(_read_exactly(reader, size))
        if _line(reader) not in (b"\r\n", b"\n"):
            raise _ProtocolError("chunk not followed by CRLF")
    while _line(reader) not in (b"\r\n", b"\n", b""):  # trailers: read and dropped
        pass
    return b"".join(parts)

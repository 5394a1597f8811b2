"""ACL matrix: 3 groups x tricky paths x every KV operation, against a hand-written table.

Every decision of a real proxy (TLS, real etcd, the alpha/beta/gamma policies of
tests/e2e/conftest.py) is compared with the table below. The table is written by hand from
docs/POLICIES.md and docs/API.md; nothing here asks vaultkey's ACL or policy code what the
answer should be.

The policies, in short (tests/e2e/conftest.py, POLICIES)::

    alpha  prefix /alpha/               allow read list write delete
           prefix /alpha/locked/        deny  write delete
           prefix /alpha/hidden/        deny  list
           prefix /shared/              allow read list
           prefix /shared/alpha/        allow write delete
           prefix /services/+/config/   allow read list
           key    /beta/public/motd     allow read
    beta   prefix /beta/                allow read list write delete
           prefix /shared/              allow read list write
           key    /shared/alpha/secret  deny  read
           prefix /services/beta/       allow read list write delete
    gamma  prefix /beta/drop/           allow write delete        (never read)

Requests are sent with httpx, with the request target given byte for byte (httpx would
otherwise remove ``.`` and ``..`` segments before sending).
"""

from __future__ import annotations

import json
import socket
import ssl
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

GROUPS = ("alpha", "beta", "gamma")

# One letter per operation, in this order, in every cell of the table:
#   g  GET    /v1/kv/<path>                     read one key
#   l  GET    /v1/kv/<path>?list=true           list (the path taken as a prefix)
#   r  GET    /v1/kv/<path>?recursive=true      recursive read (the path taken as a prefix)
#   p  PUT    /v1/kv/<path>                     write
#   m  PUT    /v1/kv/<path>  If-Match: 1        conditional write (compare-and-swap)
#   n  PUT    /v1/kv/<path>  If-None-Match: *   conditional write (create only)
#   d  DELETE /v1/kv/<path>                     delete
#   x  DELETE /v1/kv/<path>  If-Match: 1        conditional delete
#   c  GET    /v1/recipients/<path>             recipients (needs read or write)
OPS = "glrpmndxc"
# Letters:
#   A  allowed: 2xx, or an answer only given past the ACL: 404 not_found on a read or delete
#      of a missing key, 409 conflict on a conditional request, 422 invalid_envelope on a PUT
#   D  denied: 403 permission_denied
#   I  invalid: refused before the ACL (400, 404 no such route, 414, 422 invalid_request)
# Rules used to fill in the table (docs/POLICIES.md, docs/API.md):
#   * l and r need `list` on the path as a prefix (`/a/b` lists `/a/b/`); p needs `write`,
#     d `delete`, c `read` or `write`; m, n and x need `read` as well as `write`/`delete`;
#   * a prefix rule covers a key named like the prefix (`/alpha/` covers the key `/alpha`),
#     a key rule covers only that key, never a prefix, so it never grants l or r;
#   * segments compare exactly: no case folding, no Unicode normalisation, `+` in a request
#     path is invalid;
#   * a path ending in `/` is a prefix: g, p, m, n, d, x and c refuse it as invalid;
#   * paths over 1024 bytes (UTF-8), with `.`/`..`/empty segments, control characters,
#     a backslash or `%` (after decoding), encoded `/`, `\` or `%`, or invalid UTF-8 are
#     invalid for every operation and every group.
K = 1024
ROWS: list[tuple[str, str, str, str]] = [
    # raw path after /v1/kv                   alpha        beta         gamma
    #                                          glrpmndxc    glrpmndxc    glrpmndxc
    # --- baselines
    ("/alpha/x",                              "AAAAAAAAA", "DDDDDDDDD", "DDDDDDDDD"),
    ("/alpha",                                "AAAAAAAAA", "DDDDDDDDD", "DDDDDDDDD"),
    ("/alpha/x/",                             "IAAIIIIII", "IDDIIIIII", "IDDIIIIII"),
    ("/",                                     "IDDIIIIII", "IDDIIIIII", "IDDIIIIII"),
    # --- sibling prefixes
    ("/alpha2/x",                             "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),
    ("/alphabet",                             "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),
    ("/alpha;/x",                             "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),
    ("/alpha%20/x",                           "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),
    ("/sharedx/y",                            "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),
    ("/shared/alpha2/x",                      "AAADDDDDA", "AAAAAADDA", "DDDDDDDDD"),
    ("/alpha/lockedx/k",                      "AAAAAAAAA", "DDDDDDDDD", "DDDDDDDDD"),
    ("/beta/dropx/y",                         "DDDDDDDDD", "AAAAAAAAA", "DDDDDDDDD"),
    ("/beta/drop",                            "DDDDDDDDD", "AAAAAAAAA", "DDDADDADA"),
    ("/beta/drop/",                           "IDDIIIIII", "IAAIIIIII", "IDDIIIIII"),
    # --- case variants
    ("/Alpha/x",                              "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),
    ("/ALPHA/x",                              "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),
    ("/beta/Drop/x",                          "DDDDDDDDD", "AAAAAAAAA", "DDDDDDDDD"),
    ("/shared/Alpha/secret",                  "AAADDDDDA", "AAAAAADDA", "DDDDDDDDD"),
    # --- look-alike Unicode (no normalisation: none of these is /alpha/ or /shared/alpha/)
    ("/%D0%B0lpha/x",                         "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),  # U+0430
    ("/%EF%BD%81lpha/x",                      "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),  # U+FF41
    ("/alpha%E2%80%8B/x",                     "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),  # U+200B
    ("/shared/%D0%B0lpha/secret",             "AAADDDDDA", "AAAAAADDA", "DDDDDDDDD"),
    ("/alpha/%E2%80%AEtxt.exe",               "AAAAAAAAA", "DDDDDDDDD", "DDDDDDDDD"),  # U+202E
    # --- dot segments, raw and encoded
    ("/alpha/./x",                            "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/../beta/x",                      "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/beta/drop/../../alpha/x",              "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/./alpha/x",                            "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/x/..",                           "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/%2e%2e/beta/x",                  "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/.%2E/x",                         "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/%2e/x",                          "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/...",                            "AAAAAAAAA", "DDDDDDDDD", "DDDDDDDDD"),
    # --- empty segments
    ("//alpha/x",                             "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha//x",                             "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/beta/drop//x",                         "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    # --- encoded '/', '\' and '%', and a raw backslash
    ("/alpha%2Fx",                            "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha%2fx",                            "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/beta%2Fdrop%2Fx",                      "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/..%2Fbeta%2Fx",                  "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha%5Cx",                            "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/x%5c..%5cy",                     "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha\\x",                             "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha%252Fx",                          "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/x%25",                           "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    # --- NUL and other control characters (C0, DEL, C1)
    ("/alpha/x%00",                           "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/x%00/../y",                      "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/x%0D%0AX-Evil:%201",             "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/x%09y",                          "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/x%1B",                           "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/x%7F",                           "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/x%C2%85",                        "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),  # U+0085
    # --- invalid UTF-8
    ("/alpha/%ff",                            "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/%C0%AF",                         "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),  # overlong /
    ("/alpha/%ED%A0%80",                      "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),  # surrogate
    ("/alpha%80/x",                           "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    # --- length: 1024 bytes is the limit, counted in UTF-8 bytes, not characters
    ("/alpha/" + "a" * (K - 8),               "AAAAAAAAA", "DDDDDDDDD", "DDDDDDDDD"),
    ("/alpha/" + "a" * (K - 9) + "/",         "IAAIIIIII", "IDDIIIIII", "IDDIIIIII"),
    # a 1024-byte key path is valid, but the prefix it names for l and r (with the '/' added)
    # is 1025 bytes, over the limit
    ("/alpha/" + "a" * (K - 7),               "AIIAAAAAA", "DIIDDDDDD", "DIIDDDDDD"),
    ("/alpha/" + "a" * (K - 6),               "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/" + "%C3%A9" * 600,              "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),  # 607 chars
    ("/alpha/" + "a" * 8000,                  "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    # --- '+' is a policy wildcard, never a request path segment
    ("/services/+/config/x",                  "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/services/%2B/config/x",                "IIIIIIIII", "IIIIIIIII", "IIIIIIIII"),
    ("/alpha/a+b",                            "AAAAAAAAA", "DDDDDDDDD", "DDDDDDDDD"),
    # --- encoded query and fragment characters stay part of the key
    ("/alpha/x%3Flist=true",                  "AAAAAAAAA", "DDDDDDDDD", "DDDDDDDDD"),
    ("/alpha/x%23y",                          "AAAAAAAAA", "DDDDDDDDD", "DDDDDDDDD"),
    # --- deeper deny and allow rules, key rules
    ("/alpha/locked/k",                       "AAADDDDDA", "DDDDDDDDD", "DDDDDDDDD"),
    ("/alpha/locked",                         "AAADDDDDA", "DDDDDDDDD", "DDDDDDDDD"),
    ("/alpha/hidden/k",                       "ADDAAAAAA", "DDDDDDDDD", "DDDDDDDDD"),
    ("/alpha/hidden",                         "ADDAAAAAA", "DDDDDDDDD", "DDDDDDDDD"),
    ("/shared/cfg",                           "AAADDDDDA", "AAAAAADDA", "DDDDDDDDD"),
    ("/shared/alpha/secret",                  "AAAAAAAAA", "DAAADDDDA", "DDDDDDDDD"),
    ("/shared/alpha/secret2",                 "AAAAAAAAA", "AAAAAADDA", "DDDDDDDDD"),
    ("/shared/alpha/secret/x",                "AAAAAAAAA", "AAAAAADDA", "DDDDDDDDD"),
    ("/beta/public/motd",                     "ADDDDDDDA", "AAAAAAAAA", "DDDDDDDDD"),
    ("/beta/public/motd2",                    "DDDDDDDDD", "AAAAAAAAA", "DDDDDDDDD"),
    ("/beta/public/motd/x",                   "DDDDDDDDD", "AAAAAAAAA", "DDDDDDDDD"),
    ("/beta/public",                          "DDDDDDDDD", "AAAAAAAAA", "DDDDDDDDD"),
    ("/beta/drop/x",                          "DDDDDDDDD", "AAAAAAAAA", "DDDADDADA"),
    # --- '+' in rules matches exactly one segment
    ("/services/web/config/timeout",          "AAADDDDDA", "DDDDDDDDD", "DDDDDDDDD"),
    ("/services/web/config",                  "AAADDDDDA", "DDDDDDDDD", "DDDDDDDDD"),
    ("/services/beta/config/x",               "AAADDDDDA", "AAAAAAAAA", "DDDDDDDDD"),
    ("/services/a/b/config/x",                "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),
    ("/services/web/configx/y",               "DDDDDDDDD", "DDDDDDDDD", "DDDDDDDDD"),
    ("/services/beta",                        "DDDDDDDDD", "AAAAAAAAA", "DDDDDDDDD"),
]

OUTCOMES = {"A": "allow", "D": "deny", "I": "invalid"}


@dataclass
class Decision:
    path: str
    group: str
    op: str
    expected: str
    actual: str
    status: int
    body: str

    def answer(self) -> str:
        """The kind of answer, e.g. '200', '404 not_found', '422 invalid_envelope'."""
        try:
            code = json.loads(self.body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return str(self.status)
        return f"{self.status} {code}"


def _show(raw: str) -> str:
    return repr(raw) if len(raw) <= 80 else f"{raw[:60]!r}... ({len(raw)} characters)"


def _request(client: httpx.Client, op: str, raw: str, body: bytes) -> httpx.Response:
    """Send *op* on the raw path *raw*, with the request target exactly as written."""
    target = ("/v1/recipients" if op == "c" else "/v1/kv") + raw
    target += {"l": "?list=true", "r": "?recursive=true"}.get(op, "")
    method = {"p": "PUT", "m": "PUT", "n": "PUT", "d": "DELETE", "x": "DELETE"}.get(op, "GET")
    headers = {"m": {"If-Match": "1"}, "n": {"If-None-Match": "*"}, "x": {"If-Match": "1"}}
    return client.request(method, "/", headers=headers.get(op, {}),
                          content=body if method == "PUT" else None,
                          extensions={"target": target.encode("ascii")})


def _outcome(op: str, response: httpx.Response) -> str:
    """A, D or I as in the legend above; '?' for an answer that is none of them."""
    status = response.status_code
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    code, message = error.get("code"), error.get("message", "")
    if 200 <= status < 300:
        return "A"
    if status == 403 and code == "permission_denied":
        return "D"
    if status == 404 and code == "not_found" and op in "gd" and message.endswith(" not found"):
        return "A"  # only a group that may read the key learns that it is missing
    if status == 409 and code == "conflict" and op in "mnx":
        return "A"
    if status == 422 and code == "invalid_envelope" and op in "pmn":
        return "A"  # the envelope is checked after the ACL
    if status in (400, 404, 414) or (status == 422 and code == "invalid_request"):
        return "I"
    return "?"


def _body_problem(op: str, raw: str, response: httpx.Response) -> str | None:
    """For an allowed request, the proxy must have acted on exactly the path that was sent."""
    if not 200 <= response.status_code < 300:
        return None
    body = response.json()
    key = unquote(raw)
    if op in "lr":
        prefix = key if key.endswith("/") else key + "/"
        if body.get("prefix") != prefix:
            return f"prefix {body.get('prefix')!r}, sent {prefix!r}"
        listed = body["keys"] if op == "l" else [e["path"] for e in body["entries"]]
        if any(not k.startswith(prefix) for k in listed):
            return f"listing of {prefix!r} has keys outside it: {listed}"
    elif body.get("path") != key:
        return f"path {body.get('path')!r}, sent {key!r}"
    return None


def _put_body(proxy: Any, raw: str) -> bytes:
    """A valid envelope where one can be made (the conftest helper encrypts for the path's
    readers); otherwise bytes the proxy refuses with 422 invalid_envelope, which still shows
    that the ACL let the request through. The body never changes the expected letter."""
    try:
        return proxy.envelope(unquote(raw, errors="strict"), b"matrix")
    except Exception:
        return b"not an envelope"


@pytest.fixture(scope="module")
def matrix_proxy(proxy_factory) -> Any:
    p = proxy_factory()
    p.tokens = {g: p.create_token(g, name=f"{g}-matrix") for g in GROUPS}
    return p


def test_table_is_well_formed() -> None:
    assert len(ROWS) >= 25
    assert len({raw for raw, *_ in ROWS}) == len(ROWS), "duplicate path"
    for raw, *cells in ROWS:
        assert len(cells) == len(GROUPS)
        for cell in cells:
            assert len(cell) == len(OPS) and set(cell) <= set(OUTCOMES), (raw, cell)
        # whether a path is valid does not depend on who asks
        invalid = {tuple(i for i, letter in enumerate(cell) if letter == "I") for cell in cells}
        assert len(invalid) == 1, (raw, cells)


def test_every_decision_matches_the_hand_written_table(matrix_proxy) -> None:
    proxy = matrix_proxy
    store = proxy.store()
    decisions: list[Decision] = []
    body_problems: list[str] = []
    dropped: list[str] = []
    for group_index, group in enumerate(GROUPS):
        with proxy.client(proxy.tokens[group]) as client:
            for row_index, (raw, *cells) in enumerate(ROWS):
                expected = cells[group_index]
                # Even rows start with the key present and PUT a valid envelope; odd rows start
                # with it missing and PUT bytes that are no envelope, so that every kind of
                # "allowed" answer occurs (200, 404 not_found, 409, 422 invalid_envelope).
                present = row_index % 2 == 0 and expected[0] != "I"
                if present:
                    store.put(unquote(raw), b"seeded")
                elif expected[0] != "I":
                    store.delete(unquote(raw))
                body = _put_body(proxy, raw) if present else b"not an envelope"
                for op, want in zip(OPS, expected, strict=True):
                    try:
                        response = _request(client, op, raw, body)
                    except httpx.RemoteProtocolError:
                        # The proxy closed the kept-alive connection after its previous answer
                        # (see test_refused_body_does_not_break_the_kept_alive_connection).
                        # The request was never read, so sending it again is safe; the ACL
                        # decision is still checked, on a fresh connection.
                        dropped.append(f"{group} {op} {_show(raw)}")
                        response = _request(client, op, raw, body)
                    got = _outcome(op, response)
                    decisions.append(Decision(raw, group, op, want, got, response.status_code,
                                              response.text))
                    if got == "A" and (problem := _body_problem(op, raw, response)):
                        body_problems.append(f"{group} {op} {_show(raw)}: {problem}")

    kinds: Counter[str] = Counter()
    lines = []
    for d in decisions:
        if d.actual == d.expected:
            continue
        if d.actual == "A":
            kind = "UNEXPECTED ALLOW"
        elif d.actual == "D" and d.expected == "A":
            kind = "unexpected denial"
        elif d.actual == "?":
            kind = "unexpected answer"
        else:
            kind = "other mismatch"
        kinds[kind] += 1
        lines.append(f"{kind}: {d.group} {d.op} {_show(d.path)}: expected "
                     f"{OUTCOMES[d.expected]}, got {d.status} {d.body[:300]}")
    summary = (f"ACL matrix: {len(decisions)} decisions ({len(ROWS)} paths x {len(GROUPS)} "
               f"groups x {len(OPS)} operations); {kinds['UNEXPECTED ALLOW']} unexpected "
               f"allows, {kinds['unexpected denial']} unexpected denials, "
               f"{kinds['other mismatch']} other mismatches, {kinds['unexpected answer']} "
               f"unexpected answers, {len(body_problems)} wrong paths in allowed answers; "
               f"{len(dropped)} requests retried on a new connection (after a dropped one)")
    for letter, outcome in OUTCOMES.items():
        answers = Counter(d.answer() for d in decisions if d.actual == letter)
        summary += f"\n  {outcome}: " + ", ".join(
            f"{answer}: {n}" for answer, n in sorted(answers.items()))
    print("\n" + summary)
    report = "\n".join([summary, *lines, *body_problems])
    assert len(decisions) == len(ROWS) * len(GROUPS) * len(OPS)
    assert kinds["UNEXPECTED ALLOW"] == 0, report
    assert not lines and not body_problems, report


def _read_response(tls: ssl.SSLSocket) -> tuple[int, bytes, bytes]:
    """One HTTP/1.1 response (Content-Length framed): status, lower-cased head, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    head = head.lower()
    length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed in the body after {body[:200]!r}")
        body += chunk
    return int(head.split(b" ")[1]), head, body


def test_refused_body_does_not_break_the_kept_alive_connection(matrix_proxy) -> None:
    """Found while running the matrix: a PUT refused before its body is read (403 here, also
    401/422) is answered at once, and then the proxy closes the connection as soon as the
    answer is sent if the body has not fully arrived, without `Connection: close` in that
    answer. A keep-alive client (httpx, requests, the SDK) then sends its next request on a
    connection the proxy has closed and gets no answer ("Server disconnected without sending
    a response"). Either announcing the close or reading (discarding) the body is fine."""
    proxy = matrix_proxy
    host, port = proxy.addr.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(proxy.ca_path))
    body = b"not an envelope"
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        # The head first, the body only after the answer: what a client sees when the proxy
        # answers before the body's packets have arrived.
        tls.sendall(b"PUT /v1/kv/alpha2/x HTTP/1.1\r\nHost: vaultkey\r\n"
                    b"Authorization: Bearer " + proxy.tokens["alpha"].encode() + b"\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        status, head, _ = _read_response(tls)
        assert status == 403
        if b"\r\nconnection: close" in head:
            return  # the proxy said it will close: a client will not reuse the connection
        try:
            tls.sendall(body + b"GET /healthz HTTP/1.1\r\nHost: vaultkey\r\n\r\n")
            second, _, _ = _read_response(tls)
        except (OSError, ConnectionError) as exc:
            pytest.fail("the proxy answered 403 to `PUT /v1/kv/alpha2/x` (body not yet sent) "
                        "without `Connection: close`, then closed the connection: the next "
                        f"request on it (`GET /healthz`) got no answer ({exc!r})")
        assert second == 200

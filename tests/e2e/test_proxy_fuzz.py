"""Nothing a client sends gets a 500: random paths, headers, bodies and methods (hypothesis)."""

from __future__ import annotations

import http.client
import os
import ssl
from urllib.parse import quote, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SEGMENT = st.text(min_size=0, max_size=12)
PATHS = st.lists(SEGMENT, min_size=0, max_size=5).map("/".join)
HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                       max_size=30)
METHODS = st.sampled_from(["GET", "PUT", "DELETE", "POST", "PATCH", "HEAD", "OPTIONS"])
QUERY = st.sampled_from(["", "?list=true", "?recursive=true", "?list=maybe", "?recursive=1&x=2"])


@settings(max_examples=250, deadline=None, derandomize=os.environ.get("CI") == "true",
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=METHODS, path=PATHS, query=QUERY, if_match=st.none() | HEADER_VALUE,
       if_none_match=st.none() | HEADER_VALUE, body=st.binary(max_size=300),
       who=st.sampled_from(["alpha", "beta", "admin", "none"]), raw=st.booleans())
def test_random_requests_never_get_a_500(proxy, method, path, query, if_match, if_none_match,
                                         body, who, raw):
    target = "/v1/kv/" + (path if raw else quote(path, safe="/")) + query
    if raw and any(ord(c) < 0x21 or ord(c) > 0x7e for c in target):
        target = "/v1/kv/" + quote(path, safe="/%") + query
    headers = {}
    if who == "admin":
        headers["Authorization"] = f"Bearer {proxy.admin_token}"
    elif who != "none":
        headers["Authorization"] = f"Bearer {proxy.tokens[who]}"
    if if_match is not None:
        headers["If-Match"] = if_match
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match
    parts = urlsplit(proxy.addr)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=10,
                                       context=ssl.create_default_context(
                                           cafile=str(proxy.ca_path)))
    try:
        conn.request(method, target, body=body if method in ("PUT", "POST", "PATCH") else None,
                     headers=headers)
        status = conn.getresponse().status
    finally:
        conn.close()
    assert status < 500, (method, target, headers, status)

"""Network facts shared by the client and the proxy (standard library only, no I/O).

One answer to "is this host loopback?" for both sides of the wire: the SDK sends a
token over plain HTTP only to loopback, and ``serve --insecure`` / ``vaultkey dev``
only listen there::

    >>> is_loopback("127.0.0.2"), is_loopback("[::1]"), is_loopback("localhost")
    (True, True, True)
    >>> is_loopback("10.0.0.5"), is_loopback("localhost.example.com")
    (False, False)
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True if *host* (an IP literal, optionally in brackets, or ``localhost``) is loopback.

    Names are never resolved: a DNS answer can change between this check and the
    connection, so only ``localhost`` itself counts among names. IPv4 addresses
    count across all of 127.0.0.0/8, and an IPv4-mapped IPv6 address by its IPv4 part.
    """
    literal = host.removeprefix("[").removesuffix("]")
    if literal.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(literal)
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback

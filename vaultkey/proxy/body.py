"""Reading a request body: bounded in size and in time, never buffered past the limit.

Routes call this only after authentication and authorisation (dependencies run
first), so a caller without a token cannot make the proxy buffer a body::

    data = await read_body(request, limit=MAX_ENVELOPE_BYTES, timeout=30.0)
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request

from vaultkey.errors import RequestTimeout, UsageError, ValueTooLarge


async def read_body(request: Request, *, limit: int, timeout: float, what: str = "body") -> bytes:
    """The whole body, or ValueTooLarge (413), RequestTimeout (408) or UsageError."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ValueTooLarge(f"{what} of {length} bytes exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        # Why a deadline: a token holder sending one byte a second would otherwise hold a
        # connection (and a connection slot) for as long as it likes.
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ValueTooLarge(f"{what} exceeds {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the {what} did not arrive within {timeout:g} s") from None
    except ClientDisconnect:
        raise UsageError(f"the client disconnected before sending the whole {what}") from None
    return b"".join(chunks)

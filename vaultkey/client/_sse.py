"""An incremental Server-Sent Events parser: bytes in, whole messages out, no I/O.

Chunks may be cut anywhere: inside a line, between ``\\r`` and ``\\n``, inside a
multi-byte UTF-8 character. Framing as the WHATWG spec has it: ``field: value``
lines (one space after the colon is dropped), ``\\r\\n``, ``\\r`` or ``\\n`` line
ends, ``:`` comment lines (heartbeats) ignored, a blank line ends a message,
``data:`` lines joined with ``\\n``::

    >>> parser = SseParser()
    >>> parser.feed(b"event: put\\nid: 7\\ndata: {}\\n")
    []
    >>> parser.feed(b"\\n: heartbeat\\n\\n")
    [SseMessage(event='put', data='{}', id='7')]
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from vaultkey.errors import ProtocolError

# An envelope is at most ~1.5 MiB, ~2 MiB in base64: a message over this is not a proxy's.
MAX_MESSAGE_CHARS = 8 * 1024 * 1024


@dataclass(frozen=True)
class SseMessage:
    event: str
    """The ``event:`` field ("message" if the message had none)."""
    data: str
    id: str | None
    """The ``id:`` field of this message, None if it had none."""


class SseParser:
    """Feed it chunks as they arrive; each call returns the messages they completed."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False
        self._after_cr = False  # the last chunk ended with "\r": a "\n" next is the same end
        self._line = ""  # the unfinished last line
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._size = 0

    def feed(self, chunk: bytes) -> list[SseMessage]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        if text:
            self._after_cr = text.endswith("\r")
        lines = (self._line + text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._line = lines.pop()
        self._grow(len(self._line))
        messages = []
        for line in lines:
            message = self._take(line)
            if message is not None:
                messages.append(message)
        return messages

    def _grow(self, chars: int) -> None:
        if self._size + chars > MAX_MESSAGE_CHARS:
            raise ProtocolError(f"an event of the watch stream is over {MAX_MESSAGE_CHARS} "
                                "characters long")

    def _take(self, line: str) -> SseMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self._grow(len(value))
        self._size += len(value)
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # "retry" and unknown fields are ignored

    def _dispatch(self) -> SseMessage | None:
        message = None
        if self._data or self._id is not None:
            message = SseMessage(self._event or "message", "\n".join(self._data), self._id)
        self._event, self._data, self._id, self._size = "", [], None, 0
        return message

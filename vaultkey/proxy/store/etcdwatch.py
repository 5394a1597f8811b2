"""One etcd watch stream, run in a thread, its responses handed to an asyncio loop.

python-etcd3's own watcher thread dies on a stream error (it refers to an
undefined name) without telling its callbacks, which would leave a watcher
waiting forever. This module drives etcd's Watch RPC directly and always ends
with a final item: the error that stopped the stream::

    stream = WatchStream(client, b"/vaultkey/kv/", start_revision=42, deliver=put)
    ...
    stream.cancel()
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
from etcd3.utils import prefix_range_end

_END = object()


class WatchStream:
    """Watch the prefix *key* from *start_revision*; every response (or the final error)
    goes to *deliver*, from the stream's own thread."""

    def __init__(self, client: Any, key: bytes, start_revision: int,
                 deliver: Callable[[Any], None], *, range_end: bytes | None = None) -> None:
        self._requests: queue.Queue[object] = queue.Queue()
        create = rpc_pb2.WatchCreateRequest(
            key=key, range_end=range_end or prefix_range_end(key), start_revision=start_revision)
        self._requests.put(rpc_pb2.WatchRequest(create_request=create))
        stub = rpc_pb2_grpc.WatchStub(client.channel)
        self._responses = stub.Watch(self._request_iter(), credentials=client.call_credentials,
                                     metadata=client.metadata)
        self._deliver = deliver
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="vaultkey-watch", daemon=True)
        self._thread.start()

    def _request_iter(self) -> Iterator[Any]:
        while (item := self._requests.get()) is not _END:
            yield item

    def _run(self) -> None:
        try:
            for response in self._responses:
                self._hand_over(response)
                if response.canceled or response.compact_revision:
                    return
            self._hand_over(ConnectionError("the etcd watch stream ended"))
        except Exception as exc:  # any failure ends the stream; the owner reconnects
            self._hand_over(exc)

    def _hand_over(self, item: Any) -> None:
        if self._cancelled:  # the owner has gone; its loop may be closed already
            return
        with contextlib.suppress(RuntimeError):  # the owner's event loop closed meanwhile
            self._deliver(item)

    def cancel(self) -> None:
        self._cancelled = True
        self._requests.put(_END)
        self._responses.cancel()


__all__ = ["WatchStream"]

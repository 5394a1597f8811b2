"""The CLI's client, imported only by commands that talk to the proxy."""

from __future__ import annotations

from vaultkey.client import Client
from vaultkey.client._transport import Transport


class CliClient(Client):
    """One process, one or two requests: sent with :mod:`http.client`, so that no
    httpx is imported (see :mod:`vaultkey.client._lite`). Behaves exactly like
    :class:`~vaultkey.client.Client`, which it becomes where a forward proxy is set."""

    def _open(self) -> Transport:
        return Transport(self.settings, self._mounted, lite=True)

"""The audit log never loses a line: a stuck writer makes the proxy refuse requests (503).

Runs the ASGI app in-process (httpx.ASGITransport) against the real etcd, with
an audit stream that blocks until the test opens it; the rest of the proxy is
tested end to end over TLS in tests/e2e.
"""

from __future__ import annotations

import asyncio
import io
import threading

import httpx

from tests._helpers.wait import wait_until
from vaultkey.proxy.app import create_app
from vaultkey.proxy.audit import AuditWriter
from vaultkey.proxy.config import ProxyConfig
from vaultkey.proxy.state import ProxyState
from vaultkey.proxy.store.etcd import EtcdSettings, connect
from vaultkey.signkey import write_keypair

POLICY = 'group = "g"\nrecipients = ["g.pub"]\n[[rules]]\nprefix = "/g/"\nallow = ["read"]\n'
ADMIN = "kJ8vQ2xN5rT0wY7bL4mF1sD9gH6cP3aE_u-Zo2Q"


class GatedStream(io.StringIO):
    """A disk that hangs until the gate opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.gate.wait()
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_stuck_audit_log_refuses_requests_and_loses_no_line(tmp_path, etcd_server):
    (tmp_path / "g.toml").write_text(POLICY)
    write_keypair(tmp_path / "g")
    config = ProxyConfig(policies=str(tmp_path), etcd=EtcdSettings(endpoints=[etcd_server.url]),
                         admin_token=ADMIN, insecure=True, root="/audit-test")
    stream = GatedStream()
    kv, sys_store, _conn = connect(config.etcd, config.root)
    state = ProxyState(config, kv=kv, sys=sys_store, audit=AuditWriter(stream, capacity=3))
    app = create_app(config, state=state)

    async def burst(n: int) -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            answers = await asyncio.gather(*[
                c.get("/v1/whoami", headers={"Authorization": f"Bearer {ADMIN}"})
                for _ in range(n)])
            health = await c.get("/healthz")
        assert health.status_code == 200  # not a /v1 request: liveness stays up
        return [r.status_code for r in answers]

    first = asyncio.run(burst(10))
    assert first.count(200) == 3 and first.count(503) == 7
    stream.gate.set()
    # The writer thread frees a slot once a line is on disk: wait for the 3 queued ones.
    assert wait_until(lambda: len(stream.lines) == 3)
    second = asyncio.run(burst(2))
    assert second == [200, 200]
    state.close()  # drains the writer
    assert len(stream.lines) == 5
    assert all('"op": "whoami"' in line and '"status": 200' in line for line in stream.lines)
    assert "vaultkey_audit_refused_total 7.0" in state.metrics.render().decode()

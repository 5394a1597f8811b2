"""A stuck audit log makes the proxy refuse requests (503) instead of serving them unaudited.

Runs the ASGI app in-process (httpx.ASGITransport) against the real etcd; the
other proxy behaviour is tested end to end over TLS in tests/e2e.
"""

from __future__ import annotations

import asyncio
import logging
import queue

import httpx

from vaultkey.crypto import write_keypair
from vaultkey.proxy.app import create_app
from vaultkey.proxy.config import ProxyConfig
from vaultkey.proxy.state import ProxyState

POLICY = 'group = "g"\nrecipients = ["g.pub"]\n[[rules]]\nprefix = "/g/"\nallow = ["read"]\n'


def test_full_audit_queue_refuses_requests_then_recovers(tmp_path, etcd_server):
    (tmp_path / "g.toml").write_text(POLICY)
    write_keypair(tmp_path / "g")
    admin = "a" * 40
    config = ProxyConfig(policies=str(tmp_path), etcd=[etcd_server.url], admin_token=admin,
                         insecure=True, root="/audit-test")
    state = ProxyState(config)
    state.audit_queue = queue.Queue(maxsize=1)
    state.audit_queue.put(logging.makeLogRecord({"msg": "stuck"}))
    app = create_app(config, state=state)

    async def call() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            return (await c.get("/v1/whoami", headers={"Authorization": f"Bearer {admin}"}),
                    await c.get("/healthz"))

    refused, health = asyncio.run(call())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "audit" in refused.json()["error"]["message"]
    assert health.status_code == 200  # not a /v1 request: liveness stays up
    state.audit_queue.get_nowait()
    accepted, _ = asyncio.run(call())
    assert accepted.status_code == 200 and accepted.json()["kind"] == "admin"
    assert "vaultkey_audit_refused_total 1.0" in state.metrics.render().decode()
    state.close()

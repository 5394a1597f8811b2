"""Liveness, readiness and metrics: no token, nothing secret."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from vaultkey.proxy.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: etcd answers")
async def readyz(state: StateDep) -> dict[str, Any]:
    # Why no revision in the answer: etcd's revision counts every write in the cluster;
    # unauthenticated callers must not be able to watch it move.
    await state.kv.ping()
    return {"status": "ok"}


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

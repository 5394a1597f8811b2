"""Fixtures for in-process route tests on the memory store."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import POLICIES
from tests.routes.inprocess import InProcessProxy


@pytest.fixture(scope="module")
def mproxy(tmp_path_factory) -> InProcessProxy:
    p = InProcessProxy.start(POLICIES, tmp_path_factory.mktemp("routes"))
    p.tokens = {g: p.create_token(g, name=f"{g}-test") for g in ("alpha", "beta")}
    return p

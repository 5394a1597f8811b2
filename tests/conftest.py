"""Shared fixtures. Integration tests run against a real etcd started here.

If no etcd binary can be found the fixture *fails* (it never skips): a test
run that silently skipped the integration tests would prove nothing.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._helpers.procs import start_etcd
from vaultkey._dev.etcdproc import EtcdProcess, find_etcd
from vaultkey.errors import UsageError
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdSettings, EtcdStore

# The CLI keeps rollback marks under $XDG_STATE_HOME: tests (and the CLI processes they
# start, which inherit this) never read or write the real user's.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="vaultkey-test-state-")


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    try:
        binary = find_etcd()
    except UsageError as exc:
        pytest.fail(f"integration tests need a real etcd: {exc.diagnostics()}")
    with start_etcd(tmp_path_factory.mktemp("etcd"), binary=binary) as etcd:
        yield etcd


@pytest.fixture(scope="session")
def etcd_conn(etcd_server: EtcdProcess) -> Iterator[EtcdConnection]:
    conn = EtcdConnection(EtcdSettings(endpoints=[etcd_server.url], timeout=5.0))
    yield conn
    conn.close()


@pytest.fixture
def namespace(etcd_conn: EtcdConnection) -> Iterator[str]:
    """A unique etcd key prefix for one test; everything under it is deleted afterwards."""
    ns = f"/test-{uuid.uuid4().hex[:12]}"
    yield ns
    etcd_conn.client().delete_prefix(ns.encode())


@pytest.fixture
def store(etcd_conn: EtcdConnection, namespace: str) -> EtcdStore:
    return EtcdStore(etcd_conn, namespace)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "e2e" in parts:
            item.add_marker(pytest.mark.e2e)

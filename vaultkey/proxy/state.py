"""Everything one proxy process holds: etcd stores, tokens, the live policy set.

The policy set is replaced atomically on reload (SIGHUP): a request reads
``state.policies`` once and uses that snapshot, so in-flight requests are
never dropped or see a half-loaded set, and a broken set is refused while
the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading

from vaultkey.errors import VaultkeyError
from vaultkey.keys import PublicKey
from vaultkey.policy.load import LoadedPolicies, load_policy_dir, resolve_key_entry
from vaultkey.proxy.audit import AuditWriter
from vaultkey.proxy.config import ProxyConfig
from vaultkey.proxy.kvstore import AsyncKV, Blocking
from vaultkey.proxy.metrics import Metrics
from vaultkey.proxy.protocol import Counters
from vaultkey.proxy.store.etcd import EtcdConnection, EtcdStore
from vaultkey.proxy.tokens import TokenRegistry

log = logging.getLogger(__name__)


def load_escrow_keys(entries: list[str]) -> tuple[PublicKey, ...]:
    return tuple(resolve_key_entry(entry) for entry in entries)


class ProxyState:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.policies: LoadedPolicies = load_policy_dir(config.policies)
        self.escrow = load_escrow_keys(config.escrow_keys)
        self.conn = EtcdConnection(config.etcd_settings())
        self.blocking = Blocking()
        self.kv = AsyncKV(EtcdStore(self.conn, config.root + "/kv"), self.blocking)
        self.sys = EtcdStore(self.conn, config.root + "/sys")
        self.tokens = TokenRegistry(self.sys, config.admin_token.strip())
        self.metrics = Metrics()
        self.connection_counters = Counters()
        self.metrics.watch_connections(self.connection_counters)
        self.metrics.watch_store(self.kv.store.counters)
        self.metrics.watch_tokens(self.tokens)
        self._reload_lock = threading.Lock()
        # Set by the server when an audit log is configured.
        self.audit: AuditWriter | None = None
        self.metrics.policy_groups.set(len(self.policies.policy_set.groups))

    def reload_policies(self) -> bool:
        """Load the policy directory again; keep the old set if the new one is broken."""
        with self._reload_lock:
            try:
                fresh = load_policy_dir(self.config.policies)
            except VaultkeyError as exc:
                self.metrics.policy_reloads.labels(result="refused").inc()
                log.error("policy reload refused, still serving the previous policies: %s",
                          exc.diagnostics())
                return False
            self.policies = fresh
            self.metrics.policy_reloads.labels(result="ok").inc()
            self.metrics.policy_groups.set(len(fresh.policy_set.groups))
            log.info("policies reloaded: %d groups", len(fresh.policy_set.groups))
            return True

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
        self.conn.close()

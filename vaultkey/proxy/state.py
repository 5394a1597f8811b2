"""Everything one proxy process holds: its stores, tokens, the live policy set.

``ProxyState`` is handed its stores (the :class:`KVStore` protocol); it never
builds etcd itself. :meth:`ProxyState.from_config` is the one place that does,
from :class:`ProxyConfig`'s ``EtcdSettings``. The policy set is replaced
atomically on reload (SIGHUP): a request reads ``state.policies`` once and uses
that snapshot, so in-flight requests are never dropped or see a half-loaded
set, and a broken set is refused while the old one keeps serving::

    state = ProxyState(config, kv=MemoryKV(), sys=MemoryKV())   # route tests
    state = ProxyState.from_config(config)                       # vaultkey serve
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vaultkey.errors import VaultkeyError
from vaultkey.keys import PublicKey
from vaultkey.policy.load import LoadedPolicies, load_policy_dir, resolve_key_entry
from vaultkey.proxy.audit import AuditWriter
from vaultkey.proxy.cache import ReadCache
from vaultkey.proxy.cachedkv import CachedKV
from vaultkey.proxy.config import ProxyConfig
from vaultkey.proxy.hub import Hub
from vaultkey.proxy.metrics import Metrics
from vaultkey.proxy.protocol import Counters
from vaultkey.proxy.ratelimit import RateLimits
from vaultkey.proxy.store.base import KVStore
from vaultkey.proxy.tokens import TokenRegistry

log = logging.getLogger(__name__)


def load_escrow_keys(entries: list[str]) -> tuple[PublicKey, ...]:
    return tuple(resolve_key_entry(entry) for entry in entries)


class ProxyState:
    def __init__(self, config: ProxyConfig, *, kv: KVStore, sys: KVStore,
                 audit: AuditWriter | None = None, on_close: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.policies: LoadedPolicies = load_policy_dir(config.policies)
        self.escrow = load_escrow_keys(config.escrow_keys)
        # Routes read through the cache (kv); `store` is etcd itself (?consistent=true).
        self.store = kv
        self.cache = ReadCache(kv, config.cache_bytes)
        self.kv: KVStore = CachedKV(kv, self.cache) if config.cache_bytes else kv
        self.sys = sys
        self.tokens = TokenRegistry(sys, config.admin_token, clock=clock)
        self.hub = Hub(kv, sys, on_sys=self.tokens.on_sys_event,
                       on_sys_resync=self.tokens.on_sys_resync, queue=config.watch_queue,
                       cache=self.cache if config.cache_bytes else None)
        self.tokens.live = lambda: self.hub.live["sys"]
        self.audit = audit
        self._on_close = on_close
        self.metrics = Metrics()
        self.limits = RateLimits(config.rate_limit, config.address_rate_limit,
                                 config.auth_failure_limit, config.rate_burst)
        self.connection_counters = Counters()
        self.metrics.watch_connections(self.connection_counters)
        self.metrics.watch_store(kv.counters)
        self.metrics.watch_tokens(self.tokens)
        self.metrics.watch_hub(self.hub)
        self.metrics.watch_cache(self.cache)
        if audit is not None:
            self.metrics.audit_write_failures.set_function(lambda: audit.failures)
        self._reload_lock = threading.Lock()
        self.metrics.policy_groups.set(len(self.policies.policy_set.groups))

    @classmethod
    def from_config(cls, config: ProxyConfig) -> ProxyState:
        """The production state: etcd stores under ``config.root``, the audit log file."""
        from vaultkey.proxy.store.etcd import connect

        kv, sys, conn = connect(config.etcd, config.root)
        audit = AuditWriter.open(config.audit_log) if config.audit_log else None
        return cls(config, kv=kv, sys=sys, audit=audit, on_close=conn.close)

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

    def reload_admin_tokens(self) -> bool:
        """Read the admin token file again (SIGHUP); keep the current tokens if it is
        unreadable, too open or holds a weak token. False if refused (or no file)."""
        path = self.config.admin_token_file
        if not path:
            return False
        from vaultkey._files import read_private
        from vaultkey.proxy.config import admin_tokens

        try:
            tokens = admin_tokens(read_private(path, "admin token file").decode("utf-8"))
        except (VaultkeyError, UnicodeDecodeError) as exc:
            message = exc.diagnostics() if isinstance(exc, VaultkeyError) else "not UTF-8 text"
            self.metrics.admin_token_reloads.labels(result="refused").inc()
            log.error("admin token reload refused, still accepting the previous admin "
                      "tokens: %s", message)
            return False
        self.tokens.set_admin_tokens(tokens)
        self.metrics.admin_token_reloads.labels(result="ok").inc()
        log.info("admin tokens reloaded: %d accepted", len(tokens))
        return True

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
        if self._on_close is not None:
            self._on_close()

"""Prometheus metrics of one proxy, on its own registry (several apps can share a process)."""

from __future__ import annotations

import functools
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from vaultkey.proxy.cache import ReadCache
from vaultkey.proxy.hub import Hub
from vaultkey.proxy.protocol import Counters
from vaultkey.proxy.store.base import StoreCounters


def _read(counters: object, attr: str) -> float:
    return float(getattr(counters, attr))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vaultkey_requests", "HTTP requests by operation and status",
            ["op", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "vaultkey_request_seconds", "request latency by operation", ["op"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
            registry=self.registry,
        )
        self.etcd_unavailable = Counter(
            "vaultkey_etcd_unavailable", "requests answered 503 because etcd was unreachable",
            registry=self.registry,
        )
        self.audit_refused = Counter(
            "vaultkey_audit_refused", "requests refused because the audit queue was full",
            registry=self.registry,
        )
        self.audit_write_failures = Gauge(
            "vaultkey_audit_write_failures", "failed audit log writes (each line is retried)",
            registry=self.registry,
        )
        self.policy_reloads = Counter(
            "vaultkey_policy_reloads", "policy reloads by result", ["result"],
            registry=self.registry,
        )
        self.admin_token_reloads = Counter(
            "vaultkey_admin_token_reloads", "admin token file reloads (SIGHUP) by result",
            ["result"], registry=self.registry,
        )
        self.rate_limited = Counter(
            "vaultkey_rate_limited", "requests refused with 429, by limit (token, address, "
            "auth: failed authentications of an address)", ["limit"], registry=self.registry,
        )
        self.policy_groups = Gauge(
            "vaultkey_policy_groups", "groups in the live policy set", registry=self.registry
        )
        # With --workers, each worker answers its own scrapes: this says which one did.
        Gauge("vaultkey_process_id", "process id of the proxy (worker) answering this scrape",
              registry=self.registry).set(os.getpid())

    def watch_connections(self, counters: Counters) -> None:
        """Expose the HTTP layer's refusals (they never reach the app or the audit log)."""
        refused = Gauge("vaultkey_connections_refused",
                        "connections closed by the HTTP layer, by reason", ["reason"],
                        registry=self.registry)
        for reason, attr in (("head_too_large", "heads_too_large"),
                             ("head_timeout", "head_timeouts"),
                             ("evicted_idle", "evicted"), ("at_limit", "refused"),
                             ("bad_request", "bad_requests")):
            refused.labels(reason=reason).set_function(functools.partial(_read, counters, attr))

    def watch_store(self, counters: StoreCounters) -> None:
        """What the KV store read from etcd: tests and operators can see that a listing
        fetched only readable values, and spot keys that vaultkey did not write."""
        for name, attr, text in (
                ("vaultkey_store_values_fetched", "values_fetched", "values read from etcd"),
                ("vaultkey_store_keys_listed", "keys_listed", "keys enumerated (keys only)"),
                ("vaultkey_store_invalid_keys", "invalid_keys",
                 "etcd keys under the root that are not valid vaultkey paths (skipped)")):
            Gauge(name, text, registry=self.registry).set_function(
                functools.partial(_read, counters, attr))

    def watch_tokens(self, registry: object) -> None:
        Gauge("vaultkey_token_etcd_reads", "token lookups that read etcd (records and the "
              "known-id list; made-up ids cost none)", registry=self.registry).set_function(
            functools.partial(_read, registry, "etcd_lookups"))

    def watch_hub(self, hub: Hub) -> None:
        """The watch hub: etcd watch streams (2 per replica when healthy), subscribers,
        events in from etcd and out to clients, slow subscribers dropped."""
        for name, text, read in (
                ("vaultkey_watch_streams", "etcd watch streams open", "streams"),
                ("vaultkey_watch_events_in", "events received from etcd", "events_in"),
                ("vaultkey_watch_events_out", "events delivered to finished streams",
                 "events_out"),
                ("vaultkey_watch_dropped", "subscribers dropped as lagging", "dropped")):
            Gauge(name, text, registry=self.registry).set_function(
                functools.partial(_read, hub.stats, read))
        Gauge("vaultkey_watch_subscribers", "open watch streams of clients",
              registry=self.registry).set_function(lambda: float(len(hub.subscribers)))

    def watch_cache(self, cache: ReadCache) -> None:
        """The read cache: how reads were answered, and its size (docs/OPERATIONS.md)."""
        for name, text, read in (
                ("vaultkey_cache_hits", "reads answered from the cache", "hits"),
                ("vaultkey_cache_misses", "reads sent to etcd while the cache was not usable",
                 "misses"),
                ("vaultkey_cache_waits", "reads that waited for this replica's own write",
                 "waits"),
                ("vaultkey_cache_stalls", "fences the kv watch did not deliver in time",
                 "stalls"),
                ("vaultkey_cache_values_read", "values read from the cache for requests",
                 "values_read"),
                ("vaultkey_cache_keys_listed", "key names read from the cache for listings",
                 "keys_listed")):
            Gauge(name, text, registry=self.registry).set_function(
                functools.partial(_read, cache.stats, read))
        Gauge("vaultkey_cache_keys", "keys in the read cache",
              registry=self.registry).set_function(lambda: float(len(cache.entries)))
        Gauge("vaultkey_cache_bytes", "estimated bytes held by the read cache",
              registry=self.registry).set_function(lambda: float(cache.bytes))
        Gauge("vaultkey_cache_usable", "1 while reads may be answered from the cache",
              registry=self.registry).set_function(lambda: float(cache.usable_now()))

    def render(self) -> bytes:
        return generate_latest(self.registry)

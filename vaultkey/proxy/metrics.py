"""Prometheus metrics of one proxy, on its own registry (several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
        self.policy_groups = Gauge(
            "vaultkey_policy_groups", "groups in the live policy set", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

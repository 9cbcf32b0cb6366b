"""Prometheus metrics of the ingress service, served on ``/metrics``.

One registry per application object (not the process-global one), so tests can build several
apps in one process. Label values come from fixed vocabularies: an adapter name outside the
registry is counted as ``unknown`` and a rejection reason is a category (the free-text reason
goes to the log and the response body), so a fuzzer cannot blow up the series count.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Seconds: the providers give 3-15 s and want answers within ~200 ms, so resolve the low end.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)

REJECTION_REASONS = frozenset({
    "unknown_adapter",      # 404: no such adapter in the registry
    "adapter_unavailable",  # 404: registered, but its module does not import
    "unknown_account",      # 404: no such account for this adapter
    "too_large",            # 413: body over the adapter's (or the record) size limit
    "bad_method",           # 405: GET that is not a handshake
    "handshake_failed",     # 4xx from the adapter's handshake
    "unauthorized",         # 401 from verify
    "forbidden",            # 403 from verify
    "verify_error",         # verify raised something other than Rejected
    "malformed",            # 4xx from parse
    "bad_agent_token",      # agent API: missing or wrong bearer token
    "invalid_body",         # agent API: body does not validate
    "unknown_tenant",       # agent API: tenant has no account
    "unavailable",          # 503: Kafka did not acknowledge in time
    "account_mismatch",     # 403: the payload names an account the request is not signed for
})

CONTENT_TYPE = CONTENT_TYPE_LATEST


class IngressMetrics:
    """Requests, rejections by reason, events, dead letters and produce latency."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], object] = {}
        r = self.registry
        self.requests = Counter("parley_ingress_requests", "HTTP requests by route and status.",
                                ["route", "adapter", "status"], registry=r)
        self.rejections = Counter("parley_ingress_rejections", "Requests refused, by reason category.",
                                  ["adapter", "reason"], registry=r)
        self.events = Counter("parley_ingress_events", "Events acknowledged by Kafka, by type.",
                              ["adapter", "event_type"], registry=r)
        self.duplicates = Counter("parley_ingress_duplicates", "Records not written again: their event id is stored "
                                  "already (a redelivery).", ["adapter"], registry=r)
        self.dead_letters = Counter("parley_ingress_dead_letters", "Verified requests sent to the dead-letter topic.",
                                    ["adapter", "reason"], registry=r)
        self.produce_seconds = Histogram("parley_ingress_produce_seconds",
                                         "Time from handing the records of one request to the producer to the last "
                                         "ack.",
                                         ["outcome"], buckets=LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram("parley_ingress_request_seconds", "Time to answer a request.",
                                         ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.producer_ready = Gauge("parley_ingress_producer_ready", "1 when the Kafka producer is connected.",
                                    registry=r)

    def child(self, metric, *labels: str):
        """``metric.labels(*labels)``, cached: the lookup costs more than the increment."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def rejected(self, adapter: str, reason: str) -> None:
        self.rejections.labels(adapter, reason if reason in REJECTION_REASONS else "other").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

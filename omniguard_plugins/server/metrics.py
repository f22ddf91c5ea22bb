"""Prometheus metrics on the server's own registry (never the global one, so several apps or
tests in one process do not collide).

HTTP traffic is observed by the app; the judge's counters (verdicts, errors, batches, queue
depth) are read from ``judge.stats`` and ``judge.batcher.stats`` at scrape time, so there is one
source of truth and nothing to keep in sync.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..judge import OmniGuard
    from ..verdict import Verdict

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    def __init__(self, judge: OmniGuard, *, queue_delay_s: float | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "omniguard_http_requests", "HTTP requests by route and status code", ["route", "code"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "omniguard_http_request_seconds", "HTTP request latency by route", ["route"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.http_errors = Counter(
            "omniguard_http_errors", "Error responses by OpenAI error type", ["type"], registry=self.registry
        )
        self.check_latency = Histogram(
            "omniguard_check_seconds", "Judge check latency (render, decode, batch wait, model)",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.registry.register(_JudgeCollector(judge, queue_delay_s))
        # labelled children, looked up once: prometheus_client's labels() costs ~30 us a call,
        # which a burst of refusals would pay three times each
        self._children: dict[tuple[str, ...], Any] = {}

    def observe_request(self, route: str, code: str, seconds: float) -> None:
        """One HTTP answer (the gate's count and latency)."""
        self._child(self.requests, "requests", route, code).inc()
        self._child(self.request_latency, "latency", route).observe(seconds)

    def count_error(self, kind: str) -> None:
        self._child(self.http_errors, "errors", kind).inc()

    def _child(self, metric: Any, name: str, *labels: str) -> Any:
        key = (name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def on_verdict(self, verdict: Verdict) -> None:
        self.check_latency.observe(verdict.latency_ms / 1000.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _JudgeCollector(Collector):
    def __init__(self, judge: OmniGuard, queue_delay_s: float | None) -> None:
        self.judge = judge
        self.queue_delay_s = queue_delay_s

    def collect(self) -> Iterator[Metric]:
        stats = self.judge.stats
        yield _counter("omniguard_checks", "Checks judged", stats.checks)
        yield _counter("omniguard_cache_hits", "Model requests answered from the result cache", stats.cache_hits)
        verdicts = CounterMetricFamily("omniguard_verdicts", "Verdicts by label", labels=["label"])
        for label in ("safe", "unsafe", "error"):
            verdicts.add_metric([label], stats.verdicts.get(label, 0))
        yield verdicts
        errors = CounterMetricFamily("omniguard_check_errors", "Failed checks by error kind", labels=["kind"])
        for kind, count in sorted(stats.errors.items()):
            errors.add_metric([kind], count)
        yield errors

        batcher = self.judge.batcher
        b = batcher.stats
        yield _counter("omniguard_batches", "Backend batches run", b.batches)
        yield _counter("omniguard_batched_requests", "Model requests run in batches", b.requests)
        yield _counter("omniguard_backend_errors", "Backend calls that raised", b.backend_errors)
        yield _counter("omniguard_rejected", "Model requests refused at admission (queue full)", b.rejected)
        yield _counter("omniguard_dropped_cancelled", "Queued requests dropped: their caller gave up", b.cancelled)
        yield _counter("omniguard_dropped_expired", "Queued requests failed: waited past the timeout", b.expired)
        yield _counter("omniguard_worker_restarts", "Times the batch worker died and was restarted", b.worker_restarts)
        health = batcher.health()
        yield GaugeMetricFamily("omniguard_queue_depth", "Model requests waiting for the batcher",
                                value=health.queue_depth)
        yield GaugeMetricFamily("omniguard_queued_media_bytes", "Decoded media bytes held by waiting requests",
                                value=health.queued_media_bytes)
        state = GaugeMetricFamily("omniguard_health", "1 for the judge's current state", labels=["state"])
        for name in ("ready", "overloaded", "broken"):
            state.add_metric([name], 1.0 if health.state == name else 0.0)
        yield state
        admission = self.judge.admission.state(self.queue_delay_s)
        yield GaugeMetricFamily("omniguard_reservations", "Requests and checks holding a reservation (arrived, "
                                "not yet answered)", value=admission.in_flight)
        yield GaugeMetricFamily("omniguard_reserved_seconds", "Expected seconds of model work reserved",
                                value=admission.reserved_s)
        yield GaugeMetricFamily("omniguard_admission_budget_seconds", "Reserved work beyond which arrivals are "
                                "refused (the queue-delay bound plus a batch; 0: refusals off)",
                                value=admission.budget_s)
        yield GaugeMetricFamily("omniguard_queue_delay_bound_seconds", "The queue-delay bound in effect (0: off)",
                                value=admission.queue_delay_bound_s)
        yield GaugeMetricFamily("omniguard_batch_seconds", "Recent batch time the estimate uses",
                                value=admission.batch_s)
        yield _counter("omniguard_admission_refused", "Arrivals refused at admission (reserved work past the bound)",
                       admission.refused)
        yield GaugeMetricFamily("omniguard_max_batch_seen", "Largest batch run so far", value=b.max_batch_seen)
        sizes = dict(b.batch_sizes)
        buckets = [(str(edge), float(sum(c for s, c in sizes.items() if s <= edge))) for edge in _BATCH_BUCKETS]
        buckets.append(("+Inf", float(sum(sizes.values()))))
        yield HistogramMetricFamily(
            "omniguard_batch_size", "Requests per backend batch",
            buckets=buckets, sum_value=float(sum(s * c for s, c in sizes.items())),
        )


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)

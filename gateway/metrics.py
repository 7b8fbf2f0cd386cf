"""Prometheus metrics of a gateway, in a registry of its own (no global state).

One process: the numbers live in memory. Several processes (`rpcfleet gateway --workers N`): the
command points `PROMETHEUS_MULTIPROC_DIR` at a fresh directory before uvicorn starts them, each
process writes its numbers to files there (prometheus-client's multiprocess mode), and /metrics,
whichever process answers it, serves the sum. The fleet's gauges come from the answering process's
view, which every process keeps alike."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.fleet.queues import QueueCounts, QueueStats
    from gateway.fleet.view import FleetView

# Sync calls span sub-millisecond echoes to minutes-long handlers.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                   60, 300)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def shared_directory() -> str | None:
    """The multiprocess directory in force, if any (read once by prometheus-client at import)."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.shared = shared_directory()
        # What /metrics serves: this registry, or with several processes, their files summed.
        self.exposition = r
        if self.shared is not None:
            self.exposition = CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self.exposition, path=self.shared)
        self.calls = Counter("rpcfleet_calls", "Sync calls by method and outcome code",
                             ["method", "code"], registry=r)
        self.latency = Histogram("rpcfleet_call_seconds", "Sync call latency", ["method"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("rpcfleet_calls_in_flight", "Sync calls waiting for a reply",
                               multiprocess_mode="livesum", registry=r)
        self.late_replies = Counter("rpcfleet_late_replies",
                                    "Replies that matched no waiting call", registry=r)
        self.publish_nacks = Counter("rpcfleet_publish_nacks",
                                     "Publishes the broker refused (queue full)", registry=r)
        self.publish_returns = Counter("rpcfleet_publish_returns",
                                       "Publishes the broker returned (no pool)", registry=r)
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self.jobs = Counter("rpcfleet_jobs", "Jobs by method and final status",
                            ["method", "status"], registry=r)

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        """Count one call; label children are cached (labels() validates and locks each time)."""
        children = self._children.get((method, code))
        if children is None:
            children = (self.calls.labels(method, code), self.latency.labels(method))
            self._children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def watch_fleet(self, view: FleetView, queues: QueueStats) -> None:
        self.exposition.register(FleetCollector(view, queues))

    def close(self) -> None:
        """This process stops: drop its share of the live gauges (its counters stay counted)."""
        if self.shared is not None:
            multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
                os.getpid(), path=self.shared)


class FleetCollector(Collector):
    """The fleet as this process sees it, computed at scrape time."""

    def __init__(self, view: FleetView, queues: QueueStats) -> None:
        self.view = view
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["worker", "pool"]
        families = {
            "prefetch": GaugeMetricFamily("rpcfleet_worker_prefetch", "Prefetch in force",
                                          labels=labels),
            "in_flight": GaugeMetricFamily("rpcfleet_worker_in_flight", "Deliveries held",
                                           labels=labels),
            "processed": GaugeMetricFamily("rpcfleet_worker_processed",
                                           "Messages answered since start", labels=labels),
            "failed": GaugeMetricFamily("rpcfleet_worker_failed",
                                        "Failed answers since start", labels=labels),
            "pss_bytes": GaugeMetricFamily("rpcfleet_worker_pss_bytes",
                                           "Proportional set size", labels=labels),
        }
        batch_size = GaugeMetricFamily("rpcfleet_worker_batch_size_mean",
                                       "Mean requests per call of a batched method",
                                       labels=[*labels, "method"])
        batch_calls = GaugeMetricFamily("rpcfleet_worker_batch_calls",
                                        "Calls of a batched method since start",
                                        labels=[*labels, "method"])
        for entry in self.view.workers():
            for field, family in families.items():
                value = getattr(entry, field)
                if value is not None:
                    family.add_metric([entry.id, entry.pool], float(value))
            for method, batch in (entry.batches or {}).items():
                batch_size.add_metric([entry.id, entry.pool, method], batch.get("mean_size", 0))
                batch_calls.add_metric([entry.id, entry.pool, method], batch.get("calls", 0))
        yield from families.values()
        yield batch_size
        yield batch_calls
        clashes = GaugeMetricFamily(
            "rpcfleet_method_pools", "Pools whose live workers announce a method, for methods "
            "more than one pool announces (each of their calls runs in every one)",
            labels=["method"])
        for method, pools in self.view.clashes().items():
            clashes.add_metric([method], float(len(pools)))
        yield clashes
        depth = GaugeMetricFamily("rpcfleet_queue_messages", "Messages ready in a pool queue",
                                  labels=["pool"])
        consumers = GaugeMetricFamily("rpcfleet_queue_consumers", "Consumers of a pool queue",
                                      labels=["pool"])
        dead = GaugeMetricFamily("rpcfleet_dead_letters", "Messages in a pool's dead-letter queue",
                                 labels=["pool"])
        snapshot = self.queues.snapshot()
        for pool, stats in snapshot.items():
            depth.add_metric([pool], stats.messages)
            consumers.add_metric([pool], stats.consumers)
            dead.add_metric([pool], stats.dead_letters)
        yield depth
        yield consumers
        yield dead
        yield from self._elastic(snapshot)

    def _elastic(self, snapshot: dict[str, QueueCounts]
                 ) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Elastic pools (SPEC 1.2): each host's consumers and range, its scaling decisions,
        and the consumers each pool needs now (gateway.fleet.demand), for KEDA / HPA."""
        host_labels = ["pool", "host"]
        running = GaugeMetricFamily("rpcfleet_pool_consumers",
                                    "Consumers a host runs for a pool", labels=host_labels)
        least = GaugeMetricFamily("rpcfleet_pool_processes_min",
                                  "The least consumers a host keeps for a pool",
                                  labels=host_labels)
        most = GaugeMetricFamily("rpcfleet_pool_processes_max",
                                 "The most consumers a host runs for a pool", labels=host_labels)
        decisions = CounterMetricFamily(
            "rpcfleet_pool_scaling_decisions", "Consumers an elastic pool's host added (up) or "
            "retired (down) since its supervisor started", labels=[*host_labels, "direction"])
        for (pool, host), processes in sorted(self.view.hosts().items()):
            running.add_metric([pool, host], processes.now)
            least.add_metric([pool, host], processes.min)
            most.add_metric([pool, host], processes.max)
            decisions.add_metric([pool, host, "up"], processes.added)
            decisions.add_metric([pool, host, "down"], processes.retired)
        desired = GaugeMetricFamily(
            "rpcfleet_pool_desired_consumers", "Consumers a pool needs now, every host together: "
            "those busy plus what clears its backlog within 10 s (docs/operations.md)",
            labels=["pool"])
        for pool in sorted(self.view.pools()):
            counts = snapshot.get(pool)
            desired.add_metric([pool], self.view.desired_consumers(
                pool, counts.messages if counts is not None else None))
        yield from (running, least, most, decisions, desired)

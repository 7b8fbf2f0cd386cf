"""The Grafana dashboard and the KEDA example under docs/ name only what rpcfleet really exports
and declares (they cannot run here: read them and hold them to the code)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from gateway.metrics import Metrics
from protocol import names

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _exported_series() -> set[str]:
    """Every series name a gateway's /metrics can show (counters with _total, histograms with
    _bucket/_sum/_count), from the live registry and the fleet collector's families."""
    from prometheus_client.exposition import generate_latest

    metrics = Metrics()
    metrics.observe_call("echo", "ok", 0.01)
    metrics.jobs.labels("echo", "succeeded").inc()
    text = generate_latest(metrics.exposition).decode()
    series = set(re.findall(r"^(rpcfleet_\w+)", text, re.MULTILINE))
    source = (Path(__file__).resolve().parents[1] / "gateway" / "metrics.py").read_text()
    counters = re.findall(r'CounterMetricFamily\(\s*"(rpcfleet_\w+)"', source)
    return (series | set(re.findall(r'GaugeMetricFamily\(\s*"(rpcfleet_\w+)"', source))
            | {f"{name}_total" for name in counters})


def test_every_dashboard_expression_names_exported_series() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [var["query"]["query"] for var in dashboard["templating"]["list"]
                    if var["type"] == "query"]
    exported = _exported_series()
    used = {name for expr in expressions for name in re.findall(r"\brpcfleet_\w+", expr)}
    assert len(dashboard["panels"]) >= 10 and used
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_keda_example_scales_on_the_desired_consumers_and_a_real_pool_queue() -> None:
    documents = list(yaml.safe_load_all((DOCS / "keda-scaledobject.yaml").read_text()))
    scaled = next(d for d in documents if d["kind"] == "ScaledObject")
    desired, queue = scaled["spec"]["triggers"]
    assert desired["type"] == "prometheus"
    query = desired["metadata"]["query"]
    assert query == 'max(rpcfleet_pool_desired_consumers{pool="vectors"})'
    assert set(re.findall(r"\brpcfleet_\w+", query)) <= _exported_series()
    assert int(desired["metadata"]["threshold"]) >= 1
    trigger = queue
    assert trigger["type"] == "rabbitmq" and trigger["metadata"]["mode"] == "QueueLength"
    assert trigger["metadata"]["queueName"] == names.pool_queue("vectors")
    assert scaled["spec"]["minReplicaCount"] >= 1  # never 0: sync calls would meet no_workers
    auth = next(d for d in documents if d["kind"] == "TriggerAuthentication")
    assert auth["metadata"]["name"] == trigger["authenticationRef"]["name"]

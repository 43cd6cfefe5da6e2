"""The supervisor's /metrics: every worker's exposition in one, each sample labelled `worker`.

Labelled, not summed: counters and histograms could be added up, but gauges cannot (how many
rules are loaded, is Stream connected, is Redis up: each worker's own answer matters), and
prometheus-client's multiprocess mode drops what responder uses (gauges computed at scrape time
with set_function, such as responder_replies_pending). Aggregate in PromQL when a total is
wanted: `sum without (worker) (rate(responder_messages_total[5m]))`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

WORKER_LABEL = "worker"


class _Families:
    """A collector that yields families already gathered."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> list[Metric]:
        return self._families


def merge(expositions: Mapping[str, str]) -> bytes:
    """One exposition from each worker's (keyed by worker index), samples labelled worker=KEY."""
    families: dict[str, Metric] = {}
    for worker, text in expositions.items():
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            merged.samples += [
                sample._replace(labels={**sample.labels, WORKER_LABEL: worker}) for sample in family.samples
            ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families.values()))
    return generate_latest(registry)

"""Prometheus pieces shared by HTTP and gRPC services.

Identity is published once, as `lab_instance_info{service,lab_instance,version} 1`,
not as constant labels on every series: Prometheus already attaches the same
three labels to every scraped series as target labels from promsd. The gauge is
for people reading /metrics directly; in Prometheus its own labels show up as
exported_* (honor_labels: false) with the same values. `lab_instance` rather
than `instance`, which Prometheus reserves for the scrape address.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, disable_created_metrics

from .settings import Settings

# Finer than prometheus_client's default at the low end: echo answers in about a millisecond.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# *_created samples would double the series count for no lesson.
disable_created_metrics()

_INSTANCE_INFO = Gauge(
    "lab_instance_info",
    "Identity of this process; always 1",
    ["service", "lab_instance", "version"],
)

INJECTED = Counter(
    "lab_injected_faults_total",
    "Requests given an injected fault (see labstack.faults), by kind",
    ["kind"],
)
for _kind in ("latency", "error"):
    INJECTED.labels(_kind)  # both series exist at 0, so rate() works before the first fault


def publish_identity(settings: Settings) -> None:
    _INSTANCE_INFO.labels(settings.service, settings.instance_id, settings.version).set(1)

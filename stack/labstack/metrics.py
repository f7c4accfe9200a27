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

# Prometheus estimates a quantile by interpolating inside the bucket that holds it, so an
# estimate is only as good as that bucket is narrow. The lessons inject latencies and set SLOs
# from 50 ms to 2.5 s (a 250 ms timeout and p95 SLO, 300 ms and 2 s slow instances): there each
# bound is at most 8.7% above the one before, so a p95 reads within about 8% of the truth
# (with bounds only at 0.25 and 0.5 s, a real 300 ms read as 488 ms). Below 50 ms echo answers
# in about a millisecond and the canary compares versions at 1, 2.5, 5, 10 ms resolution;
# above 2.5 s there are only timeouts.
MANTISSAS = (1.0, 1.08, 1.16, 1.25, 1.35, 1.45, 1.55, 1.65, 1.75, 1.9, 2.0, 2.15, 2.3, 2.5,
             2.7, 2.9, 3.1, 3.3, 3.5, 3.75, 4.0, 4.3, 4.6, 5.0, 5.4, 5.8, 6.2, 6.7, 7.2, 7.8,
             8.4, 9.0, 9.6)
FINE_FROM_S, FINE_TO_S = 0.05, 2.5
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025,
    *(round(m * decade, 6) for decade in (0.01, 0.1, 1.0) for m in MANTISSAS
      if FINE_FROM_S <= m * decade <= FINE_TO_S),
    5.0, 10.0,
)

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

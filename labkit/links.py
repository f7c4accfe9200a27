"""The lab's web pages, the one table every link a learner is shown comes from.

Each URL opens a page that renders on the versions set-up installs (Prometheus 2.42 serves
only its classic UI; the gateway's and etcd's roots are bare 404 pages);
tests/integration/test_links.py GETs every one. Functions, not constants, so that serving
the pages through a Jupyter server proxy is a change to this module alone.
"""

from __future__ import annotations

from urllib.parse import urlencode

from .topology import infra

GATEWAY = "gateway (Traefik entry point)"  # an address for clients (send a Host header), no page


def pages() -> dict[str, str]:
    """The pages to open in a browser: name -> URL."""
    traefik = f"{infra().traefik_api.url}/dashboard/"
    return {
        "Traefik dashboard": traefik,
        "the gateway's routes (Traefik dashboard)": f"{traefik}#/http/routers",
        "Prometheus": prometheus_graph(),
        "Prometheus targets": f"{infra().prometheus.url}/classic/targets",
        "Prometheus recording rules": f"{infra().prometheus.url}/classic/rules",
        "telemetry store (query API)": f"{infra().telemetry.url}/api/stats",
        "etcd (registry) health": f"{infra().etcd.url}/health",
    }


def prometheus_graph(expr: str | None = None) -> str:
    """Prometheus's graph page, showing `expr` as a graph when one is given."""
    page = f"{infra().prometheus.url}/classic/graph"
    return f"{page}?{urlencode({'g0.expr': expr, 'g0.tab': 0})}" if expr else page


def uis() -> dict[str, str]:
    """`lab.uis`: the gateway's entry point, which code sends requests to, and every page."""
    return {GATEWAY: infra().gateway.url, **pages()}

"""The lab's web pages, the one table every link a learner is shown comes from.

Every page is served through the Jupyter server (jupyter-server-proxy, configured in
`jupyter/jupyter_server_config.py` from `PROXIED` below), so a link is a path under the
server's base URL, `/` for `make lab`, `/user/<name>/` on a JupyterHub or on Binder. It
opens from any browser that reaches the Jupyter server, wherever the lab runs: one forwarded
port is enough. Each page renders on the versions set-up installs (Prometheus 2.42 serves only
its classic UI); tests/integration/test_links.py GETs every one through a Jupyter server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlencode

from .topology import SERVICES, Endpoint, infra

GATEWAY = "gateway (Traefik entry point)"  # an address for clients (send a Host header), no page
BASE_URL_ENV = "JUPYTERHUB_SERVICE_PREFIX"  # set by JupyterHub and Binder; unset: `/`


@dataclass(frozen=True)
class Proxied:
    """A component of the running lab, served under `<base URL><name>/` by the Jupyter server."""

    name: str  # the path segment under the Jupyter server's base URL
    title: str  # in JupyterLab's launcher, and in the page shown when it does not answer
    component: str  # the field of topology.Infra it listens on
    launcher_path: str | None  # the page the launcher opens; None: not in the launcher

    def endpoint(self) -> Endpoint:
        """Where it listens now: the running lab's block (read at each call)."""
        endpoint: Endpoint = getattr(infra(), self.component)
        return endpoint


PROXIED = (
    Proxied("traefik", "Traefik dashboard", "traefik_api", "dashboard/"),
    Proxied("prometheus", "Prometheus", "prometheus", "classic/graph"),
    Proxied("telemetry", "Telemetry store API", "telemetry", "api/stats"),
    # <base URL>gateway/<service>/<path> is <path> sent with Host: <service>.localhost
    Proxied("gateway", "Gateway (echo)", "gateway", "echo/"),
    Proxied("etcd", "etcd (registry)", "etcd", None),
)
# the services a browser reaches through the gateway (gRPC needs a gRPC client)
GATEWAY_SERVICES = tuple(name for name, svc in SERVICES.items() if svc.protocol == "http")


def jupyter_base_url() -> str:
    """The Jupyter server's base URL path, with a slash at each end."""
    inner = os.environ.get(BASE_URL_ENV, "/").strip("/")
    return f"/{inner}/" if inner else "/"


def proxied(name: str, path: str = "") -> str:
    """The link to `path` of PROXIED component `name`, through the Jupyter server."""
    if name not in {entry.name for entry in PROXIED}:
        raise ValueError(f"no proxied component {name!r}")
    return f"{jupyter_base_url()}{name}/{path}"


def prometheus_external_url() -> str:
    """Prometheus's --web.external-url: its pages link under the proxy's path for it."""
    return f"{infra().prometheus.url}{proxied('prometheus')}"


def pages() -> dict[str, str]:
    """The pages to open in a browser: name -> link (a path on the Jupyter server)."""
    traefik = proxied("traefik", "dashboard/")
    return {
        "Traefik dashboard": traefik,
        "the gateway's routes (Traefik dashboard)": f"{traefik}#/http/routers",
        "Prometheus": prometheus_graph(),
        "Prometheus targets": proxied("prometheus", "classic/targets"),
        "Prometheus recording rules": proxied("prometheus", "classic/rules"),
        "telemetry store (query API)": proxied("telemetry", "api/stats"),
        "etcd (registry) health": proxied("etcd", "health"),
        **{f"{service} through the gateway": proxied("gateway", f"{service}/")
           for service in GATEWAY_SERVICES},
    }


def prometheus_graph(expr: str | None = None) -> str:
    """Prometheus's graph page, showing `expr` as a graph when one is given."""
    page = proxied("prometheus", "classic/graph")
    return f"{page}?{urlencode({'g0.expr': expr, 'g0.tab': 0})}" if expr else page


def uis() -> dict[str, str]:
    """`lab.uis`: the gateway's entry point, which code sends requests to, and every page."""
    return {GATEWAY: infra().gateway.url, **pages()}

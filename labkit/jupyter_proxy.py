"""jupyter-server-proxy entries for the lab's web pages, one per row of labkit.links.PROXIED.

jupyter-server-proxy's named entries only reach `localhost:<port>`; the lab's components
listen on their block's address (127.k.0.1), which can change from one `labkit up` to the
next. So each entry's handler finds its component's address at every request, from the
running lab, and answers a page naming the component (502, or 504 after REQUEST_TIMEOUT_S)
when it does not answer, instead of a bare error or a wait of minutes.

Loaded by `jupyter/jupyter_server_config.py`.
"""

from __future__ import annotations

import html
from typing import Any

from jupyter_server_proxy.config import ServerProcess
from jupyter_server_proxy.handlers import NamedLocalProxyHandler, ProxyHandler
from tornado import web

from . import links
from .topology import service

CONNECT_TIMEOUT_S = 5.0  # a listening component accepts in microseconds, even on a busy machine
REQUEST_TIMEOUT_S = 30.0  # Prometheus's slowest page here takes well under a second
TRAEFIK_API_URL = b'window.APIUrl = "\\/api\\/"'  # in the dashboard's HTML (Traefik 3.7)


def context_path(request_path: str, proxied_path: str) -> str:
    """The part of the browser's path that names the entry: `/user/ada/traefik`."""
    if proxied_path not in ("", "/") and request_path.endswith(proxied_path):
        return request_path[: len(request_path) - len(proxied_path)]
    return request_path.rstrip("/")


def gateway_route(path: str) -> tuple[str, str] | None:
    """`/echo/x` -> (`/x`, `echo.localhost`): the gateway routes by Host, not by path."""
    name, _, rest = path.lstrip("/").partition("/")
    if name not in links.GATEWAY_SERVICES:
        return None
    return f"/{rest}", service(name).host_rule


def unreachable_page(entry: links.Proxied, address: str, reason: str) -> str:
    title = html.escape(entry.title)
    return (
        f"<!DOCTYPE html><html><head><title>{title} is not answering</title></head><body>"
        f"<h1>{title} is not answering</h1>"
        f"<p>The lab's <b>{html.escape(entry.component)}</b> at {html.escape(address)}: "
        f"{html.escape(reason)}.</p>"
        "<p>Is the lab running? In a terminal: <code>labkit status</code>, then "
        "<code>labkit up</code> to start it or <code>labkit logs</code> to see why a "
        "component stopped.</p></body></html>"
    )


class LabProxyHandler(NamedLocalProxyHandler):
    """Proxies `<base URL><entry.name>/<path>` to the running lab's component."""

    entry: links.Proxied  # set on each entry's subclass by jupyter-server-proxy

    def proxy_request_options(self) -> dict[str, Any]:
        return {**super().proxy_request_options(), "connect_timeout": CONNECT_TIMEOUT_S,
                "request_timeout": REQUEST_TIMEOUT_S}

    async def proxy(self, port: int, path: str) -> None:
        target = self.entry.endpoint()
        path = path if path.startswith("/") else f"/{path}"
        if self.entry.name == "gateway":
            route = gateway_route(path)
            if route is None:
                services = ", ".join(f"{self.entry.name}/{name}/" for name in
                                     links.GATEWAY_SERVICES)
                raise web.HTTPError(404, f"the gateway serves {services}")
            path, self.request.headers["Host"] = route
        self.host_allowlist = [target.host]
        try:
            await ProxyHandler.proxy(self, target.host, target.port, path)
        except OSError as err:  # refused, reset: nothing listens there
            self._unreachable(502, target.address, err.strerror or str(err))
        except web.HTTPError as err:
            if err.status_code == 599:  # tornado's timeout
                self._unreachable(504, target.address,
                                  f"no answer within {REQUEST_TIMEOUT_S:.0f} s ({err.log_message})")
            elif err.status_code == 500:  # jupyter-server-proxy's wrap of a transport error
                self._unreachable(502, target.address, str(err.log_message))
            else:
                raise

    def _unreachable(self, status: int, address: str, reason: str) -> None:
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(unreachable_page(self.entry, address, reason))


def keep_redirects_under_the_prefix(response: Any, request: Any, path: str) -> None:
    """A component that knows its public path (Prometheus's --web.external-url) redirects to
    it; jupyter-server-proxy then prefixes it again: keep the path below the entry only."""
    location = response.headers.get("Location", "")
    prefix = context_path(request.path, path)
    if location.startswith(f"{prefix}/"):
        response.headers["Location"] = location[len(prefix):]


def traefik_api_under_the_prefix(response: Any, request: Any, path: str) -> None:
    """The dashboard asks `window.APIUrl` for its data: `/api/`, Jupyter's own API, unless
    pointed at the proxied Traefik API."""
    if path.rstrip("/").endswith("dashboard") and TRAEFIK_API_URL in response.body:
        api = f'window.APIUrl = "{context_path(request.path, path)}/api/"'.encode()
        response.body = response.body.replace(TRAEFIK_API_URL, api)


class LabEntry(ServerProcess):
    """A named jupyter-server-proxy entry whose handler is LabProxyHandler."""

    def __init__(self, entry: links.Proxied) -> None:
        launcher: dict[str, Any] = {"enabled": entry.launcher_path is not None,
                                    "title": entry.title, "category": "Microservice lab"}
        if entry.launcher_path is not None:
            launcher["path_info"] = f"{entry.name}/{entry.launcher_path}"
        rewrites = [keep_redirects_under_the_prefix]
        if entry.name == "traefik":
            rewrites.append(traefik_api_under_the_prefix)
        super().__init__(name=entry.name, launcher_entry=launcher,
                         rewrite_response=rewrites, new_browser_tab=True)
        self.entry = entry

    def get_proxy_base_class(self) -> tuple[type, dict]:
        return LabProxyHandler, {}

    def get_proxy_attributes(self) -> dict:
        return {**super().get_proxy_attributes(), "entry": self.entry}


def servers() -> dict[str, ServerProcess]:
    """`c.ServerProxy.servers`: every row of links.PROXIED."""
    return {entry.name: LabEntry(entry) for entry in links.PROXIED}

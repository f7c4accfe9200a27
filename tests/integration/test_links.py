"""Every link labkit shows a learner opens a page on the versions set-up installs: the pages
through a Jupyter server (jupyter-server-proxy, configured by jupyter/jupyter_server_config.py),
the addresses for code (README, notebooks) directly."""

import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from labkit import certs, dashboard, links
from labkit.lab import gateway_target
from labkit.topology import infra

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"https?://[^\s\"'<>()\[\]`\\]+")
LOCAL_HOSTS = ("127.0.0.1", "localhost")  # block 0's, as the README and notebooks show them
COURSE_SITE = "http://127.0.0.1:8300"  # `make book-serve`'s: not the lab's, served on demand


def _urls(text: str, where: str) -> dict[str, str]:
    return {url.rstrip(".,:;"): where for url in URL.findall(text)}


def _notebook_urls() -> dict[str, str]:
    found = {}
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            found |= _urls("".join(cell["source"]), notebook.name)
    return found


def _pages() -> dict[str, str]:
    """link -> where the learner sees it: every page labkit shows (CLI, notebooks, dashboard)."""
    shown = {url: "labkit.links" for url in links.pages().values()}
    return shown | {url: "the dashboard" for url in dashboard.page_links().values()}


def _addresses() -> dict[str, str]:
    """url -> where it is written, for the lab's own addresses given for code and curl (no
    `{template}`)."""
    shown = _notebook_urls() | _urls((ROOT / "README.md").read_text(), "README.md")
    return {
        url: where for url, where in shown.items()
        if "{" not in url and not url.startswith(COURSE_SITE)
        and (urlsplit(url).hostname in (*LOCAL_HOSTS, infra().gateway.host)
             or urlsplit(url).hostname.endswith(".localhost"))
    }


def _in_this_lab(url: str) -> str:
    """A block-0 address as shown (127.0.0.1:PORT) at this lab's block (127.k.0.1:PORT)."""
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        return url
    return parts._replace(netloc=f"{infra().gateway.host}:{parts.port or 80}").geturl()


def _get(client: httpx.Client, url: str) -> httpx.Response:
    """As a browser would; <service>.localhost and the gateway's own address through the
    gateway, which serves services only by Host."""
    target, host = gateway_target(_in_this_lab(url))
    if host is None and urlsplit(url).netloc == infra().gateway.address:
        host = "echo.localhost"
    return client.get(target, headers={"Host": host} if host else {})


def test_every_page_is_a_path_under_the_jupyter_base_url():
    """Nothing shown assumes the browser is on the lab's machine: no address, only paths the
    Jupyter server serves, under its base URL (the suite's is not `/`)."""
    assert links.jupyter_base_url() != "/", "run under a base URL to tell paths apart"
    absolute = {url: where for url, where in _pages().items()
                if urlsplit(url).netloc or not url.startswith(links.jupyter_base_url())}
    assert not absolute, f"links that bypass the Jupyter server: {absolute}"


def test_every_page_answers_200_through_the_jupyter_server(lab, jupyter_server):
    with httpx.Client(headers=jupyter_server.headers, follow_redirects=True,
                      timeout=10) as client:
        failed = {
            url: f"{response.status_code} (shown in {where})"
            for url, where in _pages().items()
            if (response := client.get(jupyter_server.url(url))).status_code != 200
        }
    assert not failed, f"links that do not render through Jupyter: {failed}"


def test_every_address_for_code_answers_200(lab):
    # as a learner's code on this machine: trusting the lab CA, which signs the gateway's https
    with httpx.Client(follow_redirects=True, timeout=10,
                      verify=certs.trusting_the_lab(lab.backend.state)) as client:
        failed = {}
        for url, where in _addresses().items():
            try:
                status: object = _get(client, url).status_code
            except httpx.HTTPError as exc:  # named with the rest, not the first one alone
                status = f"{type(exc).__name__}: {exc}"
            if status != 200:
                failed[url] = f"{status} (shown in {where})"
    assert not failed, f"addresses that do not answer: {failed}"


def test_proxied_pages_link_under_the_prefix(lab, jupyter_server):
    """Prometheus's and Traefik's pages point their assets and API calls below their proxy
    path, not at the Jupyter server's root."""
    with httpx.Client(headers=jupyter_server.headers, timeout=10) as client:
        prometheus = client.get(jupyter_server.url(links.pages()["Prometheus"])).text
        traefik = client.get(jupyter_server.url(links.pages()["Traefik dashboard"])).text
        root = client.get(jupyter_server.url(links.proxied("prometheus")))
    assets = re.findall(r'(?:src|href)="(/[^"]*)"', prometheus)
    assert assets and all(a.startswith(links.proxied("prometheus")) for a in assets), assets
    assert f'window.APIUrl = "{links.proxied("traefik", "api/")}"' in traefik
    assert root.headers["Location"] == links.proxied("prometheus", "classic/graph")


def test_the_launcher_lists_every_ui(jupyter_server):
    info = httpx.get(
        jupyter_server.url(f"{links.jupyter_base_url()}server-proxy/servers-info"),
        headers=jupyter_server.headers, timeout=10).json()
    launched = {server["name"] for server in info["server_processes"]
                if server["launcher_entry"]["enabled"]}
    assert launched == {"traefik", "prometheus", "telemetry", "gateway"}


def test_a_component_that_is_down_gets_a_502_page_naming_it(start_jupyter):
    """A Jupyter server whose lab is not running: the worker's private block holds test
    servers of its own, never a lab's infrastructure."""
    spare = os.environ["LABKIT_TEST_PRIVATE_BLOCK"]
    with start_jupyter("no-lab", LABKIT_BLOCK=spare) as server, \
            httpx.Client(headers=server.headers, timeout=10) as client:
        for entry in links.PROXIED:
            path = "echo/" if entry.name == "gateway" else "x"
            response = client.get(server.url(links.proxied(entry.name, path)))
            assert response.status_code == 502, (entry.name, response.status_code)
            assert f"{entry.title} is not answering" in response.text
            assert getattr(infra(int(spare)), entry.component).address in response.text

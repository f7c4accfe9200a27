"""Every link labkit shows a learner opens a page on the versions set-up installs."""

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from labkit import dashboard, links
from labkit.lab import gateway_target
from labkit.topology import infra

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"https?://[^\s\"'<>()\[\]`\\]+")
LOCAL_HOSTS = ("127.0.0.1", "localhost")  # block 0's, as the README and notebooks show them


def _urls(text: str, where: str) -> dict[str, str]:
    return {url.rstrip(".,:;"): where for url in URL.findall(text)}


def _notebook_urls() -> dict[str, str]:
    found = {}
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            found |= _urls("".join(cell["source"]), notebook.name)
    return found


def _shown() -> dict[str, str]:
    """url -> where the learner sees it; only the lab's own addresses (no `{template}`)."""
    shown = {url: "labkit.links" for url in links.pages().values()}
    shown |= {url: "the dashboard" for url in dashboard.page_links().values()}
    shown |= _notebook_urls()
    shown |= _urls((ROOT / "README.md").read_text(), "README.md")
    return {
        url: where for url, where in shown.items()
        if "{" not in url
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


def test_every_link_a_learner_is_shown_answers_200(lab):
    shown = _shown()
    assert set(links.pages().values()) <= set(shown)
    with httpx.Client(follow_redirects=True, timeout=10) as client:
        failed = {
            url: f"{response.status_code} (shown in {where})"
            for url, where in shown.items()
            if (response := _get(client, url)).status_code != 200
        }
    assert not failed, f"links that do not render: {failed}"

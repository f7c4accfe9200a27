"""The lab's web side in a real browser: Playwright drives the OS's chromium (set-up installs
it; Playwright's own browser download is not used) against a plain JupyterLab server under a
base URL (fixture `jupyter_server`), the way a remote learner reaches it: every request the
pages make must go to the Jupyter server, none straight to the lab's addresses. Screenshots
land in tests/output/browser/ (git-ignored)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import sync_playwright

from labkit import links
from labkit.topology import service
from labkit.waits import wait_for

pytestmark = [pytest.mark.live, pytest.mark.timeout(400)]

SHOTS = Path(__file__).resolve().parents[1] / "output" / "browser"
# a notebook's Run All on this 2-core machine shared with other labs: the tour takes ~30 s
NOTEBOOK_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def browser() -> Iterator:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: run 'make setup' (as root, it installs it)")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(request, lab, browser, jupyter_server):
    """A logged-in tab that refuses, and records, any request to the lab's machine that does
    not go through the Jupyter server (the pages fetch nothing else there)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    bypassed: list[str] = []
    jupyter = urlsplit(jupyter_server.origin).netloc

    def only_through_jupyter(route) -> None:
        parts = urlsplit(route.request.url)
        if parts.netloc != jupyter:
            if parts.hostname == "localhost" or (parts.hostname or "").startswith("127."):
                bypassed.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", only_through_jupyter)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    tab.goto(jupyter_server.lab_url)  # the token in the URL logs the browser in (a cookie)
    yield tab
    _shot(tab, f"{request.node.name}-last")  # how the page was left, failed or not
    context.close()
    _shut_down_kernels(jupyter_server)
    assert not bypassed, f"requests that bypassed the Jupyter server: {bypassed}"


def _shut_down_kernels(jupyter_server) -> None:
    """A Run All goes on in its kernel after the test has seen what it needed (notebook 09
    scales echo after its dashboard): stop it, or it acts on this worker's lab under the next
    tests (it once held echo's lock while a chaos test healed)."""
    api = jupyter_server.url(f"{links.jupyter_base_url()}api/kernels")
    with httpx.Client(headers=jupyter_server.headers, timeout=60, trust_env=False) as client:
        for kernel in client.get(api).raise_for_status().json():
            client.delete(f"{api}/{kernel['id']}").raise_for_status()


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _kernel_idle(page, notebook: str) -> bool:
    """The status bar shows the notebook with its kernel idle (before the kernel is up, it
    reads "No Kernel | Idle")."""
    status = " ".join(page.locator(".jp-StatusBar-Widget").all_inner_texts())
    return f"{notebook}.ipynb" in status and "| Idle" in status and "No Kernel" not in status


def _open_notebook(page, jupyter_server, notebook: str) -> None:
    """In a workspace of its own: the only document open, so the one Run All runs."""
    base = links.jupyter_base_url()
    page.goto(jupyter_server.url(f"{base}lab/workspaces/{notebook}/tree/{notebook}.ipynb"))
    wait_for(lambda: _kernel_idle(page, notebook), what=f"the kernel of {notebook}, idle",
             timeout=90, interval=0.5,
             diagnose=lambda: " ".join(page.locator(".jp-StatusBar-Widget").all_inner_texts()))


def _run_all(page) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def _prompts(page) -> list[str]:
    return [text.strip() for text in
            page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()]


def _finished(page) -> bool:
    """Every code cell ran (`[n]:`, not `[*]:` or `[ ]:`), or one failed (its traceback)."""
    prompts = _prompts(page)
    ran = bool(prompts) and all(p.strip("[]:").isdecimal() for p in prompts)
    return ran or _errors(page) != []


def _errors(page) -> list[str]:
    return [text for text in page.locator(".jp-OutputArea-output").all_inner_texts()
            if "Traceback (most recent call last)" in text]


def test_the_tour_runs_all_in_jupyterlab(page, jupyter_server):
    _open_notebook(page, jupyter_server, "00-tour")
    _run_all(page)
    wait_for(lambda: _finished(page), what="00-tour to run every cell",
             timeout=NOTEBOOK_TIMEOUT_S, interval=1, diagnose=lambda: str(_prompts(page)))
    _shot(page, "00-tour")
    assert not _errors(page), _errors(page)[0]
    assert page.locator(".jp-OutputArea-output").count() > 5
    # a link it shows opens, in a new tab, through the Jupyter server (fixture `page` refuses
    # any request that bypasses it)
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Prometheus targets", exact=True).click()
    targets = opened.value
    targets.get_by_text(f"{service('echo').metrics_endpoint(1).address}/metrics").wait_for()
    assert urlsplit(targets.url).netloc == urlsplit(jupyter_server.origin).netloc


def test_traefik_dashboard_shows_the_echo_service(page, jupyter_server):
    page.goto(jupyter_server.url(links.proxied("traefik", "dashboard/#/http/services")))
    page.get_by_text("echo@etcd", exact=True).first.wait_for()
    _shot(page, "traefik-services")


def test_prometheus_lists_the_echo_targets(page, jupyter_server):
    page.goto(jupyter_server.url(links.pages()["Prometheus targets"]))
    echo = service("echo")
    for slot in (1, 2, 3):
        page.get_by_text(f"{echo.metrics_endpoint(slot).address}/metrics").first.wait_for()
    assert page.locator("link[rel=stylesheet]").count() > 0
    assert page.evaluate("() => document.styleSheets.length") > 0  # its CSS loaded via Jupyter
    _shot(page, "prometheus-targets")


def test_notebook_09_dashboard_redraws_live(page, jupyter_server):
    _open_notebook(page, jupyter_server, "09-metrics-and-dashboards")
    _run_all(page)
    dashboard = page.locator(".jp-CodeCell", has=page.get_by_text("Live: redrawn every"))
    frames: set[str] = set()

    def redrawn_twice() -> bool:
        if _errors(page):
            raise AssertionError(_errors(page)[0])
        if dashboard.count():
            frames.add(dashboard.locator("img").first.get_attribute("src") or "")
        return len(frames) >= 3  # the first frame and two redraws

    wait_for(redrawn_twice, what="the dashboard to redraw twice",
             timeout=NOTEBOOK_TIMEOUT_S, interval=1, diagnose=lambda: f"{len(frames)} frames")
    dashboard.locator("img").first.scroll_into_view_if_needed()
    _shot(page, "09-dashboard")

"""The Jupyter proxy's pure parts: paths, gateway routes, the unreachable page, the entries."""

from types import SimpleNamespace

from labkit import jupyter_proxy, links


def test_context_path_is_the_entry_under_the_base_url():
    assert jupyter_proxy.context_path("/user/ada/traefik/dashboard/", "/dashboard/") == \
        "/user/ada/traefik"
    assert jupyter_proxy.context_path("/prometheus/", "/") == "/prometheus"


def test_the_gateway_entry_routes_by_host():
    assert jupyter_proxy.gateway_route("/echo/a/b") == ("/a/b", "echo.localhost")
    assert jupyter_proxy.gateway_route("/web/") == ("/", "web.localhost")
    assert jupyter_proxy.gateway_route("/routeguide/") is None  # gRPC: not for a browser
    assert jupyter_proxy.gateway_route("/") is None


def test_a_redirect_to_the_public_path_keeps_one_prefix():
    response = SimpleNamespace(headers={"Location": "/user/ada/prometheus/classic/graph"})
    request = SimpleNamespace(path="/user/ada/prometheus/")
    jupyter_proxy.keep_redirects_under_the_prefix(response, request, "/")
    assert response.headers["Location"] == "/classic/graph"  # the proxy prefixes it once


def test_the_dashboard_asks_the_proxied_traefik_api():
    response = SimpleNamespace(body=b'<script>window.APIUrl = "\\/api\\/"</script>')
    request = SimpleNamespace(path="/user/ada/traefik/dashboard/")
    jupyter_proxy.traefik_api_under_the_prefix(response, request, "/dashboard/")
    assert response.body == b'<script>window.APIUrl = "/user/ada/traefik/api/"</script>'


def test_the_unreachable_page_names_the_component_escaped():
    entry = links.Proxied("x", "A <b>", "prometheus", None)
    page = jupyter_proxy.unreachable_page(entry, "127.3.0.1:9095", "Connection refused")
    assert "A &lt;b&gt; is not answering" in page and "127.3.0.1:9095" in page


def test_one_entry_per_row_of_the_table_in_the_launcher_when_it_has_a_page():
    servers = jupyter_proxy.servers()
    assert list(servers) == [entry.name for entry in links.PROXIED]
    for entry in links.PROXIED:
        launcher = servers[entry.name].launcher_entry
        assert launcher.enabled == (entry.launcher_path is not None)
        if entry.launcher_path:
            assert launcher.path_info == f"{entry.name}/{entry.launcher_path}"


def test_links_follow_the_base_url(monkeypatch):
    monkeypatch.setenv(links.BASE_URL_ENV, "user/ada")
    assert links.jupyter_base_url() == "/user/ada/"
    assert links.pages()["Traefik dashboard"] == "/user/ada/traefik/dashboard/"
    monkeypatch.delenv(links.BASE_URL_ENV)
    assert links.pages()["Prometheus targets"] == "/prometheus/classic/targets"

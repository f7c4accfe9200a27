"""The course site's link check (book/links.py) on a tiny site, and the build's refusal to
build without the suite's executed notebooks (book/build.py)."""

from pathlib import Path

import pytest

from book import build
from book.links import BrokenLink, check_site


def write(root: Path, name: str, body: str) -> None:
    page = root / name
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"<!DOCTYPE html><html><body>{body}</body></html>", encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    write(tmp_path, "index.html", """
        <a href="a.html">good</a> <a href="a.html#there">good anchor</a>
        <a href="#top" id="top">this page</a> <a href="sub/">a folder</a>
        <img src="_images/plot.png"> <a href="/a.html">from the root</a>
        <a href="missing.html">missing file</a> <a href="a.html#nowhere">missing anchor</a>
        <a href="https://example.org/x.html">external</a> <a href="mailto:a@b.c">mail</a>
        <a href="//cdn.example.org/x.js">another host</a>
        <a href="/user/learner/traefik/dashboard/">the lab's page</a>
    """)
    write(tmp_path, "a.html", '<h1 id="there">A</h1> <a href="index.html#gone">up</a>')
    write(tmp_path, "sub/index.html", '<a href="../a.html">back</a> <img src="../plot.png">')
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "plot.png").write_bytes(b"\x89PNG")
    return tmp_path


def test_reports_each_broken_internal_link_and_nothing_else(site: Path) -> None:
    broken = check_site(site, served_elsewhere=build.served_by_jupyter)
    assert broken == [
        BrokenLink("a.html", "index.html#gone", "no anchor #gone"),
        BrokenLink("index.html", "missing.html", "no such file"),
        BrokenLink("index.html", "a.html#nowhere", "no anchor #nowhere"),
        BrokenLink("sub/index.html", "../plot.png", "no such file"),
    ], "\n".join(map(str, broken))


def test_a_lab_page_is_checked_unless_the_caller_says_another_server_serves_it(
        site: Path) -> None:
    broken = {(b.page, b.link) for b in check_site(site)}
    assert ("index.html", "/user/learner/traefik/dashboard/") in broken


def test_a_clean_site_passes_and_a_deleted_page_fails(site: Path) -> None:
    write(site, "index.html", '<a href="a.html#there">a</a> <a href="sub/">sub</a>')
    write(site, "a.html", '<p id="there"></p>')
    write(site, "sub/index.html", '<a href="../a.html">back</a>')
    assert check_site(site) == []
    (site / "a.html").unlink()
    assert [str(b) for b in check_site(site)] == [
        "index.html: a.html#there (no such file)", "sub/index.html: ../a.html (no such file)"]


def test_the_html_files_of_asset_folders_are_no_pages(site: Path) -> None:
    write(site, "_static/macros.html", "<link href=\"{{ pathto('theme.css', 1) }}\">")
    lab = build.served_by_jupyter
    assert len(check_site(site, served_elsewhere=lab)) == 5
    assert len(check_site(site, served_elsewhere=lab, assets=("_static",))) == 4


def test_links_outside_the_site_are_broken(tmp_path: Path) -> None:
    write(tmp_path / "site", "index.html", '<a href="../elsewhere.html">up and out</a>')
    write(tmp_path, "elsewhere.html", "")
    assert [b.reason for b in check_site(tmp_path / "site")] == ["outside the site"]


def test_lab_pages_are_the_jupyter_servers_under_any_base_url() -> None:
    assert build.served_by_jupyter("/traefik/dashboard/#/http/routers")
    assert build.served_by_jupyter("/user/ada/prometheus/classic/graph?g0.expr=up")
    assert not build.served_by_jupyter("01-load-balancing.html")
    assert not build.served_by_jupyter("/_static/styles/theme.css")


def test_missing_executed_copies_are_named_with_what_to_run(tmp_path: Path) -> None:
    sources = [Path("notebooks/00-tour.ipynb"), Path("notebooks/01-load-balancing.ipynb")]
    (tmp_path / "00-tour-default.ipynb").write_text("{}", encoding="utf-8")
    with pytest.raises(build.BookError) as raised:
        build.executed_copies(tmp_path, sources)
    message = str(raised.value)
    assert "01-load-balancing-default.ipynb" in message and "00-tour" not in message, message
    assert "make test" in message, message
    (tmp_path / "01-load-balancing-default.ipynb").write_text("{}", encoding="utf-8")
    assert [p.name for p in build.executed_copies(tmp_path, sources)] == [
        "00-tour-default.ipynb", "01-load-balancing-default.ipynb"]


def test_solutions_are_staged_where_the_notebooks_link_them(tmp_path: Path) -> None:
    executed = tmp_path / "executed"
    executed.mkdir()
    for name in ("05-retries-default.ipynb", "05-retries-solutions.ipynb"):
        (executed / name).write_text("{}", encoding="utf-8")
    source = tmp_path / "src"
    build.stage([executed / "05-retries-default.ipynb"],
                [executed / "05-retries-solutions.ipynb"], source)
    assert (source / "05-retries.ipynb").is_file()
    assert (source / "solutions" / "05-retries.ipynb").is_file()  # notebooks/solutions/ too
    index = (source / "index.md").read_text(encoding="utf-8")
    assert ":caption: Worked solutions\n\nsolutions/05-retries\n" in index, index

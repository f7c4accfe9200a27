"""`make book`: the course site, every notebook as the test suite executed it, as static HTML.

    python -m book.build [EXECUTED]    # EXECUTED: the executed copies, default tests/output

Takes `<stem>-default.ipynb` from EXECUTED for each notebooks/NN-*.ipynb and
`<stem>-solutions.ipynb` for each worked solution (the suite keeps them: `make test` first),
puts them under their own names (solutions in solutions/) beside book/conf.py, book/index.md
and the learning path (notebooks/README.md) in build/book/src, builds build/book/html with
Sphinx and MyST-NB (no execution: the suite's outputs), then checks every internal link of the
site. Exit status 1 names each missing copy or broken link.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from labkit import paths
from labkit.course import learning_path
from labkit.links import PROXIED

from .links import check_site

ROOT = paths.REPO
BOOK = ROOT / "book"
LEARNING_PATH = learning_path.INDEX
BUILD = ROOT / "build" / "book"
SOURCE = BUILD / "src"
HTML = BUILD / "html"
WARNINGS = BUILD / "warnings.log"
# the themes' static files: their .html files are Jinja fragments, not pages
ASSETS = ("_static",)
SOLUTIONS = paths.SOLUTIONS.name  # the folder the notebooks link their solutions in
# the lab's pages as the notebooks link them: `<Jupyter base URL><component>/...` (labkit.links)
LAB_PAGES = frozenset(page.name for page in PROXIED)


class BookError(Exception):
    """What stops the build, said for the person who ran it."""


def executed_copies(executed: Path, sources: list[Path], variant: str = "default") -> list[Path]:
    """The suite's executed copy of each notebook (its `variant` run), in the same order."""
    copies = [paths.executed_copy(source, variant, executed) for source in sources]
    missing = [copy.name for copy in copies if not copy.is_file()]
    if missing:
        raise BookError(
            f"no executed copy in {executed} of {len(missing)} notebook(s): "
            f"{', '.join(missing)}. Run `make test` first (the suite executes every notebook "
            "and keeps its copies in tests/output/)."
        )
    return copies


def stage(copies: list[Path], solutions: list[Path], source: Path = SOURCE) -> None:
    """The site's sources: conf.py, index.md with its tables of contents, the notebooks, and
    their worked solutions in solutions/ (where the notebooks' exercises link them)."""
    shutil.rmtree(source, ignore_errors=True)
    (source / SOLUTIONS).mkdir(parents=True)
    shutil.copy2(BOOK / "conf.py", source / "conf.py")
    pages = []
    if LEARNING_PATH.is_file():
        shutil.copy2(LEARNING_PATH, source / "README.md")
        pages.append("README")
    for copy in copies:
        name = copy.name.removesuffix("-default.ipynb")
        shutil.copy2(copy, source / f"{name}.ipynb")
        pages.append(name)
    solved = []
    for copy in solutions:
        name = copy.name.removesuffix("-solutions.ipynb")
        shutil.copy2(copy, source / SOLUTIONS / f"{name}.ipynb")
        solved.append(f"{SOLUTIONS}/{name}")
    index = (BOOK / "index.md").read_text(encoding="utf-8")
    tables = "\n".join(toctree(caption, names) for caption, names in
                       (("Notebooks", pages), ("Worked solutions", solved)))
    (source / "index.md").write_text(f"{index}\n{tables}", encoding="utf-8")


def toctree(caption: str, pages: list[str]) -> str:
    return "\n".join(["```{toctree}", ":maxdepth: 1", f":caption: {caption}", "", *pages,
                      "```", ""])


def build_html(source: Path = SOURCE, html: Path = HTML) -> int:
    """Sphinx's HTML build; its warnings go to WARNINGS (they fail nothing): their count."""
    from sphinx.cmd.build import build_main

    status = build_main(
        ["-b", "html", "-q", "-d", str(BUILD / "doctrees"), "-w", str(WARNINGS),
         str(source), str(html)]
    )
    if status != 0:
        raise BookError(f"sphinx-build exited {status} (its messages above, {WARNINGS})")
    log = WARNINGS.read_text(encoding="utf-8") if WARNINGS.is_file() else ""
    return sum(1 for line in log.splitlines() if "WARNING:" in line)


def served_by_jupyter(link: str) -> bool:
    """A lab page: served by the Jupyter server the notebook ran in, not a file of this site.

    The notebooks link the lab's UIs as paths under that server's base URL, e.g.
    `/user/learner/traefik/dashboard/` in the suite's runs (`/traefik/dashboard/` under
    `make lab`), through jupyter-server-proxy: like external links, they are not checked.
    """
    path = urlsplit(link).path
    return path.startswith("/") and any(part in LAB_PAGES for part in path.split("/"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m book.build", description="Build the course site and check its links.")
    parser.add_argument("executed", nargs="?", type=Path, default=paths.EXECUTED,
                        help="the suite's executed notebooks (default: tests/output)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        copies = executed_copies(args.executed, paths.notebooks())
        solutions = executed_copies(args.executed, paths.solutions(), "solutions")
        stage(copies, solutions)
        warnings = build_html()
    except BookError as error:
        print(f"book: {error}", file=sys.stderr)
        return 1
    broken = check_site(HTML, served_elsewhere=served_by_jupyter, assets=ASSETS)
    for link in broken:
        print(f"book: broken link: {link}", file=sys.stderr)
    if broken:
        print(f"book: {len(broken)} broken internal link(s) in {HTML}", file=sys.stderr)
        return 1
    print(f"book: {len(copies)} notebooks and {len(solutions)} solutions in "
          f"{HTML.relative_to(ROOT)}/index.html ({time.monotonic() - start:.1f} s; "
          f"{warnings} Sphinx warnings, {WARNINGS.name}); "
          "internal links ok. `make book-serve` serves it on http://127.0.0.1:8300")
    return 0


if __name__ == "__main__":
    sys.exit(main())

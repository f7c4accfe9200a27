"""The internal links of a built static site: each must name a file of the site, and its
#anchor an element of that page. External links are not fetched.

A link is external when it names a scheme or a host (`https:`, `mailto:`, `data:`, `//host`),
or when the caller's `served_elsewhere` says so (a path another server answers). Every other
link is a file under the site's root: relative to its page, or to the root when it starts with
`/`; a folder means its index.html.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# the attributes that link to something the browser loads or opens
LINK_ATTRIBUTES = frozenset({"href", "src"})


@dataclass(frozen=True)
class BrokenLink:
    page: str  # the page holding the link, relative to the site's root
    link: str  # as written in the page
    reason: str  # what is missing

    def __str__(self) -> str:
        return f"{self.page}: {self.link} ({self.reason})"


class _Page(HTMLParser):
    """One page's links and the anchors it offers (id, and a's name)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in LINK_ATTRIBUTES:
                self.links.append(value)
            elif name == "id" or (tag == "a" and name == "name"):
                self.anchors.add(value)


def _parse(page: Path) -> _Page:
    parsed = _Page()
    parsed.feed(page.read_text(encoding="utf-8", errors="replace"))
    parsed.close()
    return parsed


def is_external(link: str) -> bool:
    """A link to another site, or no file at all (mailto:, data:, javascript:)."""
    parts = urlsplit(link)
    return bool(parts.scheme or parts.netloc)


def _target(root: Path, page: Path, path: str) -> Path:
    """The file a link's path names: relative to its page, or to the root from a `/`."""
    base = root if path.startswith("/") else page.parent
    target = (base / unquote(path).lstrip("/")).resolve()
    return target / "index.html" if target.is_dir() else target


def check_site(
    root: Path,
    served_elsewhere: Callable[[str], bool] = lambda link: False,
    assets: tuple[str, ...] = (),
) -> list[BrokenLink]:
    """Every broken internal link of the HTML pages under `root`, in page order.

    `assets`: folders of the root whose .html files are no pages (a theme's template
    fragments): their links are not checked, links to them are.
    """
    root = root.resolve()
    pages = {page: _parse(page) for page in sorted(root.rglob("*.html"))
             if page.relative_to(root).parts[0] not in assets}
    broken: list[BrokenLink] = []
    for page, parsed in pages.items():
        where = page.relative_to(root).as_posix()
        for link in parsed.links:
            if not link or is_external(link) or served_elsewhere(link):
                continue
            reason = _missing(root, page, link, pages)
            if reason:
                broken.append(BrokenLink(where, link, reason))
    return broken


def _missing(root: Path, page: Path, link: str, pages: dict[Path, _Page]) -> str:
    """What an internal link lacks: "" when its file (and anchor) exist."""
    parts = urlsplit(link)
    target = _target(root, page, parts.path) if parts.path else page
    if not target.is_relative_to(root):
        return "outside the site"
    if not target.is_file():
        return "no such file"
    anchor = unquote(parts.fragment)
    if anchor and target in pages and anchor not in pages[target].anchors:
        return f"no anchor #{anchor}"
    return ""

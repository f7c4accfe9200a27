"""The lab's dashboard in the notebook: RED metrics per service and per instance.

Six panels from Prometheus's recording rules (see `.lab/rules.yml`): request
rate, error ratio and latency percentiles, per service (top row) and per
instance (bottom row). In a learner's live Jupyter session it refreshes itself
for a bounded time; under papermill or CI it is drawn once.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import jupyter, links
from .errors import LabError
from .metrics import Prometheus

if TYPE_CHECKING:
    from IPython.display import DisplayHandle, Image


def page_links() -> dict[str, str]:
    """The pages the dashboard links to: name -> URL, from labkit.links."""
    pages = links.pages()
    return {
        "Prometheus (graph of the request rate per service)":
            links.prometheus_graph("service:lab_requests:rate10s"),
        "Prometheus recording rules": pages["Prometheus recording rules"],
        "Traefik dashboard": pages["Traefik dashboard"],
    }


@dataclass(frozen=True)
class Panel:
    title: str
    query: str
    by: str  # the label naming each line
    ylabel: str
    scale: float = 1.0  # seconds -> ms, ratio -> %


# (title, recording rule, y label, scale), drawn per service (top row) and per instance
_VIEWS = (
    ("Request rate", "lab_requests:rate10s", "requests/s", 1.0),
    ("Error ratio", "lab_errors:ratio_rate10s", "errors (%)", 100.0),
    ("p95 latency", "lab_request_duration_seconds:p95_rate10s", "latency (ms)", 1000.0),
)
PANELS = tuple(
    Panel(f"{title} per {level}", f"{level}:{rule}", label, ylabel, scale)
    for level, label in (("service", "service"), ("instance", "lab_instance"))
    for title, rule, ylabel, scale in _VIEWS
)


def fetch(prometheus: Prometheus, window: str = "3m", step: str = "2s") -> dict[str, pd.DataFrame]:
    """Each panel's series over the last `window`: panel title -> tidy frame."""
    return {p.title: prometheus.query(p.query, start=window, step=step) for p in PANELS}


def draw(data: dict[str, pd.DataFrame]) -> Figure:
    # A bare Figure, not pyplot: drawn from the refresh thread too, and shown only when displayed.
    fig = Figure(figsize=(13, 6.5), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True)
    for panel, ax in zip(PANELS, axes.flat, strict=True):
        _draw_panel(ax, panel, data[panel.title])
    fig.suptitle(f"Lab dashboard: RED metrics over 10 s windows (at {time.strftime('%H:%M:%S')})")
    return fig


def _draw_panel(ax: Axes, panel: Panel, frame: pd.DataFrame) -> None:
    ax.set(title=panel.title, ylabel=panel.ylabel, xlabel="time (UTC)")
    if frame.empty or panel.by not in frame:
        ax.text(0.5, 0.5, "no data yet: send some load", ha="center", va="center",
                transform=ax.transAxes, color="gray")
        return
    for name, series in frame.dropna(subset=[panel.by]).groupby(panel.by):
        ax.plot(series["time"], series["value"] * panel.scale, label=name)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="x-small", loc="upper left")
    ax.tick_params(axis="x", labelrotation=30, labelsize="small")


def show(prometheus: Prometheus, *, window: str = "3m", refresh: float = 5.0,
         duration: float = 600.0, live: bool | None = None) -> dict[str, pd.DataFrame]:
    """Draw the dashboard; redraw it every `refresh` s for `duration` s when `live`
    (default: only in a learner's live Jupyter session). Returns the data first drawn.

    Each frame is a PNG display output, redrawn in place by its display id: the refresh
    thread touches only its own outputs (never the cell running meanwhile), and a saved
    notebook keeps the last frame as an image."""
    from IPython.display import HTML, Markdown, display

    anchors = (f'<a href="{url}" target="_blank">{name}</a>' for name, url in page_links().items())
    display(HTML(f"<p>Open: {' · '.join(anchors)}</p>"))
    data = fetch(prometheus, window)
    if live is None:
        live = jupyter.in_kernel() and jupyter.interactive()
    frame = display(_image(draw(data)), display_id=True)
    if live:
        note = display(Markdown(f"Live: redrawn every {refresh:g} s for {duration:g} s."),
                       display_id=True)
        threading.Thread(target=_refresh,
                         args=(prometheus, frame, note, window, refresh, duration),
                         daemon=True, name="labkit-dashboard").start()
    return data


def _image(fig: Figure) -> Image:
    """The frame as PNG bytes: no pyplot and no inline backend needed, safe from a thread."""
    from IPython.display import Image

    png = io.BytesIO()
    fig.savefig(png, format="png")
    return Image(data=png.getvalue(), format="png")


def _refresh(prometheus: Prometheus, frame: DisplayHandle, note: DisplayHandle, window: str,
             refresh: float, duration: float) -> None:
    """Redraw `frame` until `duration` is over or Prometheus stops answering (the stack went
    down), then say why in `note`. Updates by display id only: nothing is printed."""
    from IPython.display import Markdown

    deadline = time.monotonic() + duration
    while time.monotonic() + refresh < deadline:
        time.sleep(refresh)
        try:
            frame.update(_image(draw(fetch(prometheus, window))))
        except LabError as exc:
            note.update(Markdown(f"Dashboard stopped: {exc}"))
            return
    note.update(Markdown(f"Dashboard stopped refreshing after {duration:g} s; "
                         "call `lab.dashboard()` again."))

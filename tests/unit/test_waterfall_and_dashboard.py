"""The trace waterfall and the dashboard draw what they are given (no live stack)."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from labkit import dashboard  # noqa: E402
from labkit.waterfall import span_order, trace  # noqa: E402


def spans(*rows):
    frame = pd.DataFrame(rows, columns=["span_id", "parent_span_id", "service", "start",
                                        "duration_ms", "status"])
    frame["trace_id"] = "ab" * 16
    frame["instance"] = frame["service"] + "-1"
    frame["name"] = "GET /"
    frame["offset_ms"] = frame["start"]
    frame["depth"] = 0
    return frame


def test_children_come_right_under_their_parent_in_start_order():
    frame = spans(("c2", "root", "echo", 5, 1, "OK"), ("root", "", "traefik", 0, 10, "OK"),
                  ("c1", "root", "web", 1, 3, "OK"), ("g1", "c1", "echo", 2, 1, "OK"),
                  ("orphan", "missing", "web", 8, 1, "OK"))
    assert [frame["span_id"].iat[p] for p in span_order(frame)] == [
        "root", "c1", "g1", "c2", "orphan"]


def test_the_waterfall_has_one_bar_per_span_and_marks_errors():
    frame = spans(("root", "", "traefik", 0, 10, "OK"), ("c1", "root", "echo", 1, 3, "ERROR"))
    ax = trace(frame)
    assert len(ax.patches) == 2
    assert "error" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "2 spans" in ax.get_title()
    with pytest.raises(ValueError):
        trace(frame.iloc[0:0])


def test_the_dashboard_draws_six_panels_and_says_when_there_is_no_data():
    series = pd.DataFrame({"time": pd.to_datetime([1, 2], unit="s", utc=True),
                           "value": [1.0, 2.0], "service": "echo", "lab_instance": "echo-1"})
    data = {panel.title: series for panel in dashboard.PANELS}
    data[dashboard.PANELS[1].title] = pd.DataFrame(columns=["time", "value"])
    fig = dashboard.draw(data)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == [p.title for p in dashboard.PANELS]
    assert "no data yet" in axes[1].texts[0].get_text()
    assert len(axes[0].get_lines()) == 1


class _Gone:
    """A Prometheus that has stopped answering (the stack went down)."""

    def query(self, *_args, **_kwargs):
        from labkit.errors import LabError

        raise LabError("Prometheus at http://127.0.0.1:9 is not reachable")


class _Handle:
    """Stands in for an IPython DisplayHandle: collects what the refresh loop shows."""

    def __init__(self):
        self.shown = []

    def update(self, obj):
        self.shown.append(obj)


def _refresh(duration: float) -> str:
    """What the note says once the refresh loop ends, with a Prometheus that is gone."""
    frame, note = _Handle(), _Handle()
    dashboard._refresh(_Gone(), frame, note, "1m", refresh=0.01, duration=duration)
    assert frame.shown == [], "Prometheus never answered: nothing to redraw"
    return " ".join(m.data for m in note.shown)


def test_the_live_dashboard_stops_when_prometheus_goes_away():
    said = _refresh(duration=5)
    assert "Dashboard stopped: Prometheus at http://127.0.0.1:9 is not reachable" in said


def test_the_live_dashboard_stops_at_its_deadline():
    said = _refresh(duration=0)
    assert "stopped refreshing after 0 s" in said

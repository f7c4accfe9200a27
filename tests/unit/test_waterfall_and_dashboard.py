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


class _Output:
    """Stands in for an ipywidgets.Output: collects what the refresh loop prints."""

    def __init__(self):
        self.printed = []

    def __enter__(self):
        import contextlib
        import io

        self._buffer = io.StringIO()
        self._redirect = contextlib.redirect_stdout(self._buffer)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc):
        self._redirect.__exit__(*exc)
        self.printed.append(self._buffer.getvalue())

    def clear_output(self, wait=False):
        pass


def test_the_live_dashboard_stops_when_prometheus_goes_away():
    output = _Output()
    dashboard._refresh(_Gone(), output, "1m", refresh=0.01, duration=5)
    assert "dashboard stopped" in "".join(output.printed)


def test_the_live_dashboard_stops_at_its_deadline():
    output = _Output()
    dashboard._refresh(_Gone(), output, "1m", refresh=0.01, duration=0)
    assert "stopped refreshing after 0 s" in "".join(output.printed)

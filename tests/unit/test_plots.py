"""Each plot draws a run_load frame with a title and axis labels that carry units."""

from __future__ import annotations

import matplotlib

# tests never open windows. Not MPLBACKEND: the notebooks' kernels inherit this process's
# environment, and with it saved no inline plot
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from labkit import plots  # noqa: E402
from labkit.load import COLUMNS

pytestmark = pytest.mark.timeout(30)


def _run(spread: float, broken: bool = True, seconds: float = 4.0, rps: int = 100) -> pd.DataFrame:
    """A frame shaped like run_load's: 3 instances; from half-time blue-3 may fail or time out."""
    rng = np.random.default_rng(7)
    n = int(seconds * rps)
    scheduled = np.arange(n) / rps
    start = scheduled + rng.uniform(0, 0.002, n)
    instance = np.array(["blue-1", "blue-2", "blue-3"])[np.arange(n) % 3]
    latency = rng.lognormal(np.log(5), spread, n)
    status = np.full(n, 200)
    error = np.full(n, "", dtype=object)
    broken = (instance == "blue-3") & (scheduled > seconds / 2) & broken
    status[broken] = 503
    timed_out = broken & (np.arange(n) % 2 == 0)
    status[timed_out], error[timed_out], latency[timed_out] = 0, "timeout", 1000.0
    instance = np.where(timed_out, "", instance)
    df = pd.DataFrame({
        "scheduled": scheduled, "start": start, "end": start + latency / 1000,
        "latency_ms": latency, "latency_from_scheduled_ms": latency + (start - scheduled) * 1000,
        "status": status, "error": error, "instance": instance, "version": "v1",
        "client": "",
    })[COLUMNS]
    df.attrs = {"url": "http://echo.localhost/", "mode": "open", "rps": rps,
                "concurrency": None, "seconds": seconds, "host": None, "started_at": 0.0}
    return df


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _assert_labelled(ax: Axes, x_unit: str | None, y_unit: str) -> None:
    assert ax.get_title(), "every plot needs a title"
    if x_unit:
        assert x_unit in ax.get_xlabel(), ax.get_xlabel()
    assert y_unit in ax.get_ylabel(), ax.get_ylabel()


def test_requests_per_instance_marks_the_fair_share():
    df = _run(spread=0.3)
    ax = plots.requests_per_instance(df)

    assert isinstance(ax, Axes)
    _assert_labelled(ax, None, "(count)")
    assert ax.get_xlabel() == "instance"
    assert "without an instance" in ax.get_title()
    answered = df.loc[df["instance"] != "", "instance"].value_counts().sort_index()
    shares = [f"{n / answered.sum():.0%}" for n in answered]
    assert [label.get_text() for label in ax.texts[1:]] == shares
    assert ax.texts[0].get_text().startswith("fair share")
    fair = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(fair) == 1 and fair[0].get_ydata()[0] == pytest.approx(answered.sum() / 3)


def test_requests_per_instance_draws_into_a_given_axes_with_a_given_title():
    _, ax = plt.subplots()
    assert plots.requests_per_instance(_run(spread=0.3), ax=ax, title="Round robin") is ax
    assert ax.get_title() == "Round robin"


@pytest.mark.parametrize(
    ("spread", "broken", "log"), [(0.2, False, False), (2.0, False, True), (0.2, True, True)]
)
def test_latency_has_a_time_panel_and_a_distribution(spread, broken, log):
    over_time, dist = plots.latency(_run(spread=spread, broken=broken))

    assert over_time.figure is dist.figure and over_time.figure.get_suptitle()
    _assert_labelled(over_time, "(s)", "(ms)")
    _assert_labelled(dist, "(ms)", "(count)")
    assert (dist.get_xscale() == "log") is log
    legend = [text.get_text() for text in dist.get_legend().get_texts()]
    assert legend[0].startswith("p50 = ") and legend[1].startswith("p99 = ")


def test_status_over_time_stacks_status_classes():
    ax = plots.status_over_time(_run(spread=0.3), bin_seconds=1.0)

    _assert_labelled(ax, "(s)", "(count)")
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["2xx", "5xx", "no response"]
    heights = pd.Series([bar.get_height() for bar in ax.patches])
    assert heights.sum() == 400, "every request sits in exactly one bar"


def test_share_over_time_is_a_stacked_percentage():
    ax = plots.share_over_time(_run(spread=0.3), bin_seconds=1.0)

    _assert_labelled(ax, "(s)", "(%)")
    assert ax.get_ylim() == (0, 100)
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "blue-1", "blue-2", "blue-3",
    ]


def test_annotate_marks_a_moment():
    ax = plots.status_over_time(_run(spread=0.3))
    assert plots.annotate(ax, 2.0, "blue-3 breaks") is ax
    assert any(text.get_text() == "blue-3 breaks" for text in ax.texts)
    assert any(list(line.get_xdata()) == [2.0, 2.0] for line in ax.lines)


def test_empty_frame_is_refused_clearly():
    with pytest.raises(ValueError, match="no requests"):
        plots.latency(_run(spread=0.3).iloc[0:0])


def test_bad_bin_width_is_refused_clearly():
    with pytest.raises(ValueError, match="bin_seconds must be > 0"):
        plots.share_over_time(_run(spread=0.3), bin_seconds=0)

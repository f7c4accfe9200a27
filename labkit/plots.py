"""Plots of a run_load DataFrame: who served the requests, how fast, and how that changed.

Every function takes the frame from `labkit.load.run_load` and returns the Axes
(or Figure) it drew on, so a notebook can add to it, e.g. with `annotate`.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from .waterfall import trace  # noqa: F401  (lab.plot.trace: a trace's spans as a waterfall)

STATUS_COLORS = {
    "2xx": "tab:green", "3xx": "tab:blue", "4xx": "tab:orange", "5xx": "tab:red",
    "no response": "dimgray",
}
TIME_LABEL = "time since start (s)"
# Above this max/min ratio a linear latency axis squeezes the fast requests into one bar.
WIDE_SPREAD = 50


def requests_per_instance(
    df: pd.DataFrame, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Bar per instance with its share of the answered requests; dashed line at the fair share."""
    _require_rows(df)
    ax = ax or plt.subplots(figsize=(6, 4), layout="constrained")[1]
    answered = df.loc[df["instance"] != "", "instance"]
    counts = answered.value_counts().sort_index()
    bars = ax.bar(counts.index, counts.to_numpy(), color=_instance_colors(df, counts.index))
    if len(counts):
        fair = len(answered) / len(counts)
        ax.axhline(fair, color="black", linestyle="--", linewidth=1)
        ax.text(1.01, fair, f"fair share\n{fair:.0f}", transform=ax.get_yaxis_transform(),
                va="center", fontsize="small")
        # Inside the bars, so the fair-share line never crosses a label.
        ax.bar_label(
            bars, labels=[f"{n / len(answered):.0%}" for n in counts], label_type="center",
            color="white", fontweight="bold",
        )
    missing = len(df) - len(answered)
    note = f", {missing} without an instance" if missing else ""
    ax.set(
        xlabel="instance",
        ylabel="requests (count)",
        title=title or f"Requests per instance ({_run_label(df)}{note})",
    )
    return ax


def latency(df: pd.DataFrame, title: str | None = None) -> tuple[Axes, Axes]:
    """Latency over time (with p50/p99 per 0.5 s) beside the latency distribution.

    Returns the two panels (over time, distribution); `.figure` of either is the figure.
    Not the Figure itself: Jupyter would draw a returned Figure a second time.
    """
    _require_rows(df)
    fig, (over_time, dist) = plt.subplots(
        1, 2, figsize=(11, 4), width_ratios=[3, 2], layout="constrained"
    )
    ms = df["latency_ms"]
    wide = ms.max() / max(ms.min(), 1e-3) > WIDE_SPREAD
    answered = df["error"] == ""
    over_time.scatter(df.loc[answered, "start"], ms[answered], s=4, alpha=0.4, label="response")
    if (~answered).any():
        over_time.scatter(
            df.loc[~answered, "start"], ms[~answered], s=14, marker="x",
            color=STATUS_COLORS["no response"], label="no response",
        )
    bins = _bins(df, 0.5)
    per_bin = ms.groupby(bins.to_numpy()).quantile([0.5, 0.99]).unstack()
    centers = per_bin.index * 0.5 + 0.25
    over_time.plot(centers, per_bin[0.5], color="tab:blue", label="p50 per 0.5 s")
    over_time.plot(centers, per_bin[0.99], color="tab:red", label="p99 per 0.5 s")
    if wide:
        over_time.set_yscale("log")
    over_time.set(xlabel=TIME_LABEL, ylabel="latency (ms)", title="Latency over time")
    over_time.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, fontsize="small")

    edges = np.geomspace(max(ms.min(), 1e-3), ms.max(), 50) if wide else 50
    dist.hist(ms, bins=edges, color="tab:gray", alpha=0.7)
    if wide:
        dist.set_xscale("log")
    for q, color in ((0.5, "tab:blue"), (0.99, "tab:red")):
        value = ms.quantile(q)
        dist.axvline(value, color=color, linestyle="--", label=f"p{q * 100:g} = {value:.1f} ms")
    dist.set(xlabel="latency (ms)", ylabel="requests (count)", title="Latency distribution")
    dist.legend(loc="upper right", fontsize="small")
    fig.suptitle(title or f"Latency ({_run_label(df)})")
    return over_time, dist


def status_over_time(
    df: pd.DataFrame, ax: Axes | None = None, bin_seconds: float = 0.5, title: str | None = None
) -> Axes:
    """Stacked bars of responses per status class (2xx ... 5xx, no response) per time bin."""
    _require_rows(df)
    ax = ax or plt.subplots(figsize=(8, 4), layout="constrained")[1]
    status = df["status"]
    classes = (status // 100).astype(str) + "xx"
    classes = classes.where(status > 0, "no response")
    counts = pd.crosstab(_bins(df, bin_seconds), classes)
    counts = counts.reindex(range(counts.index.max() + 1), fill_value=0)
    bottom = np.zeros(len(counts))
    for name, color in STATUS_COLORS.items():
        if name in counts:
            ax.bar(
                counts.index * bin_seconds, counts[name], width=bin_seconds, bottom=bottom,
                align="edge", color=color, label=name, edgecolor="white", linewidth=0.5,
            )
            bottom += counts[name].to_numpy()
    ax.set_ylim(0, bottom.max() * 1.12)  # headroom for annotate() labels
    ax.set(
        xlabel=TIME_LABEL,
        ylabel=f"responses per {bin_seconds:g} s (count)",
        title=title or f"Responses by status over time ({_run_label(df)})",
    )
    _legend_outside(ax)
    return ax


def share_over_time(
    df: pd.DataFrame, ax: Axes | None = None, bin_seconds: float = 0.5, title: str | None = None,
    by: str = "instance",
) -> Axes:
    """Each instance's (or, by="version", each version's) share of the successful (2xx/3xx)
    responses, per time bin, stacked."""
    _require_rows(df)
    ax = ax or plt.subplots(figsize=(8, 4), layout="constrained")[1]
    ok = df[(df["status"] >= 200) & (df["status"] < 400) & (df[by] != "")]
    if len(ok):
        shares = pd.crosstab(_bins(ok, bin_seconds), ok[by], normalize="index") * 100
        # Every bin gets a step, so a bin without successes shows as a gap, not as a ramp.
        last = _bins(df, bin_seconds).max()
        shares = shares.reindex(range(last + 2), fill_value=0)
        ax.stackplot(
            shares.index * bin_seconds, shares.T.to_numpy(), labels=shares.columns,
            colors=_instance_colors(df, shares.columns, by), alpha=0.85, step="post",
        )
        ax.set_xlim(0, (last + 1) * bin_seconds)
        _legend_outside(ax)
    ax.set_ylim(0, 100)
    ax.set(
        xlabel=TIME_LABEL,
        ylabel="share of successful responses (%)",
        title=title or f"Share per {by} over time ({_run_label(df)})",
    )
    return ax


def discovery_timeline(
    df: pd.DataFrame, events: pd.DataFrame, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Who served each request over time (one row per instance), with the registry's
    up/down events (from `lab.registry.watch`) marked on each instance's row."""
    _require_rows(df)
    ax = ax or plt.subplots(figsize=(9, 4), layout="constrained")[1]
    names = sorted((set(df["instance"]) | set(events["instance"])) - {""})
    rows = {name: i for i, name in enumerate(names)}
    failed = ~df["status"].between(200, 399)
    served = df[~failed & df["instance"].isin(rows)]
    answered = pd.Index(sorted(set(served["instance"])))
    colors = dict(zip(answered, _instance_colors(df, answered), strict=True))
    ax.scatter(served["start"], served["instance"].map(rows), s=6, marker="|",
               color=served["instance"].map(colors).tolist(), label="request served")
    if failed.any():
        errors_row = len(names)
        rows["failed requests"] = errors_row
        ax.scatter(df.loc[failed, "start"], [errors_row] * int(failed.sum()), s=14, marker="x",
                   color=STATUS_COLORS["5xx"], label="request failed")
    t = events["time"] - df.attrs.get("started_at", 0)
    for kind, marker, color in (("up", "^", "tab:green"), ("down", "v", "black")):
        picked = events["event"] == kind
        ax.scatter(t[picked], events.loc[picked, "instance"].map(rows), s=90, marker=marker,
                   color=color, zorder=3, label=f"registry: {kind}")
    ax.set_yticks(list(rows.values()), list(rows))
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set(xlabel=TIME_LABEL, title=title or f"Registry events and traffic ({_run_label(df)})")
    _legend_outside(ax)
    return ax


def annotate(ax: Axes, t: float, label: str) -> Axes:
    """Mark time `t` (s since start) with a dotted line and a label, e.g. when a fault began."""
    ax.axvline(t, color="black", linestyle=":", linewidth=1.2)
    ax.annotate(
        label, xy=(t, 1), xycoords=("data", "axes fraction"), xytext=(3, -3),
        textcoords="offset points", va="top", fontsize="small",
        bbox={"boxstyle": "square,pad=0.2", "facecolor": "white", "alpha": 0.8, "linewidth": 0},
    )
    return ax


def _legend_outside(ax: Axes) -> None:
    # Stacked plots fill the whole axes: a legend inside would hide data.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")


def _require_rows(df: pd.DataFrame) -> None:
    if df.empty:
        raise ValueError("nothing to plot: the DataFrame has no requests (was the run too short?)")


def _bins(df: pd.DataFrame, bin_seconds: float) -> pd.Series:
    if bin_seconds <= 0:
        raise ValueError(f"bin_seconds must be > 0, got {bin_seconds!r}")
    return (df["start"] // bin_seconds).astype(int).rename("bin")


def _instance_colors(df: pd.DataFrame, names: pd.Index, by: str = "instance") -> list:
    # Colour by rank among all of the run's instances, so each keeps its colour in every plot.
    everyone = sorted(set(df[by]) - {""})
    palette = matplotlib.color_sequences["tab10"]  # the colours of the tab10 colormap
    return [palette[everyone.index(name) % len(palette)] for name in names]


def _run_label(df: pd.DataFrame) -> str:
    attrs = df.attrs
    if attrs.get("mode") == "open":
        return f"{attrs['rps']:g} rps for {attrs['seconds']:g} s"
    if attrs.get("mode") == "closed":
        return f"{attrs['concurrency']} users for {attrs['seconds']:g} s"
    return f"{len(df)} requests"

"""A trace as a waterfall: one bar per span, children under their parent, coloured by service."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch


def span_order(spans: pd.DataFrame) -> list[int]:
    """Row positions depth-first: each span right under its parent, siblings by start time.

    Spans whose parent is not in the trace (not exported, or pruned) are roots.
    """
    ids = set(spans["span_id"])
    children: dict[str, list[int]] = {}
    roots: list[int] = []
    for position, parent in enumerate(spans["parent_span_id"]):
        (children.setdefault(parent, []) if parent in ids else roots).append(position)
    by_start = spans["start"].to_numpy()
    order: list[int] = []
    stack = sorted(roots, key=lambda p: by_start[p], reverse=True)
    while stack:  # iterative: a deep trace must not hit the recursion limit
        position = stack.pop()
        order.append(position)
        kids = children.get(spans["span_id"].iat[position], [])
        stack.extend(sorted(kids, key=lambda p: by_start[p], reverse=True))
    return order


def trace(spans: pd.DataFrame, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Draw the spans of one trace (the frame from `lab.trace(trace_id)`)."""
    if spans.empty:
        raise ValueError("no spans to draw")
    rows = spans.iloc[span_order(spans)].reset_index(drop=True)
    height = max(2.5, 0.35 * len(rows) + 1)
    ax = ax or plt.subplots(figsize=(11, height), layout="constrained")[1]
    services = sorted(rows["service"].unique())
    palette = plt.get_cmap("tab10")
    colors = {name: palette(i % 10) for i, name in enumerate(services)}
    failed = rows["status"].eq("ERROR")
    ax.barh(
        range(len(rows)), rows["duration_ms"], left=rows["offset_ms"],
        color=[colors[s] for s in rows["service"]],
        edgecolor=["red" if f else "none" for f in failed], linewidth=2,
        hatch=["//" if f else "" for f in failed],
    )
    labels = [
        "  " * depth + f"{service} {instance}".strip() + f": {name}"
        for depth, service, instance, name in zip(
            rows["depth"], rows["service"], rows["instance"], rows["name"], strict=True)
    ]
    ax.set_yticks(range(len(rows)), labels, fontsize="small")
    ax.invert_yaxis()  # the root on top, as in Jaeger
    for y, (left, width) in enumerate(zip(rows["offset_ms"], rows["duration_ms"], strict=True)):
        ax.text(left + width, y, f" {width:.1f} ms", va="center", fontsize="x-small")
    handles = [Patch(color=colors[s], label=s) for s in services]
    if failed.any():
        handles.append(Patch(facecolor="white", edgecolor="red", hatch="//", label="error"))
    ax.legend(handles=handles, loc="lower right", fontsize="small")
    total = (rows["offset_ms"] + rows["duration_ms"]).max()
    ax.set(
        xlabel="time since the trace started (ms)",
        title=title or f"Trace {rows['trace_id'].iat[0][:12]}…: {len(rows)} spans "
                       f"over {total:.1f} ms",
    )
    ax.set_xlim(0, total * 1.15)
    return ax

"""What every benchmark records for `make bench`'s closing table (bench/summary.py).

Each benchmark prints its own detail and calls `record` for its headline figures; the
figures of one `make bench` go to build/bench/results.jsonl, emptied by `make bench` first.
Every figure is a list of runs: the table shows their median and range.
"""

from __future__ import annotations

import json

import psutil

from labkit import paths, telemetry_settings

RESULTS = paths.REPO / "build" / "bench" / "results.jsonl"


def header(title: str) -> str:
    """A benchmark's first line: what it measures, on how many cores, at which telemetry
    setting (the lab's, from its state folder)."""
    settings = telemetry_settings.load(paths.state_dir())
    return (f"{title} ({psutil.cpu_count()} cores; telemetry: "
            f"{settings.sample:.0%} of requests traced)")


def record(bench: str, figure: str, runs: list[float], unit: str,
           note: str = "") -> None:
    """Keep one figure's runs for the summary table; `note` says what it is compared to."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as file:
        file.write(json.dumps({"bench": bench, "figure": figure, "runs": runs, "unit": unit,
                               "note": note}) + "\n")


def record_all(bench: str, runs: list[dict[str, float]]) -> None:
    """`record` every figure of `runs` (one dict per run, as print_medians takes them); the
    unit is in each figure's name."""
    for figure in runs[0]:
        record(bench, figure, [run[figure] for run in runs], "")


def read() -> list[dict]:
    if not RESULTS.exists():
        return []
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]

"""What every benchmark needs: a quiet Lab on a running stack, left as it was found."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager

from labkit.lab import Lab


@contextmanager
def running_lab() -> Iterator[Lab]:
    """Start the stack if needed; stop it afterwards only if this started it."""
    lab = Lab(progress=lambda _msg: None)
    started_here = not lab.backend.is_up()
    lab.up()
    try:
        yield lab
    finally:
        if started_here:
            lab.down()
        else:
            lab.heal()


def median_range(values: list[float], digits: int = 2) -> str:
    """'median [min-max]' of `values`, with thousands separators."""
    return (f"{statistics.median(values):>9,.{digits}f} "
            f"[{min(values):,.{digits}f}-{max(values):,.{digits}f}]")  # fmt: skip


def print_medians(runs: list[dict[str, float]], indent: str = "  ", digits: int = 2) -> None:
    """One line per figure of `runs` (one dict per run): median [min-max]."""
    width = max(map(len, runs[0]))
    for name in runs[0]:
        print(f"{indent}{name:>{width}}  {median_range([run[name] for run in runs], digits)}")

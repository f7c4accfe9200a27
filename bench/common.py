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


def print_medians(runs: list[dict[str, float]]) -> None:
    """One line per figure of `runs` (one dict per run): median [min-max]."""
    width = max(map(len, runs[0]))
    for name in runs[0]:
        values = [run[name] for run in runs]
        print(f"  {name:>{width}}  {statistics.median(values):6.2f}  "
              f"[{min(values):.2f}-{max(values):.2f}]")

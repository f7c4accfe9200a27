"""What every benchmark needs: a quiet Lab on a running stack, left as it was found; wrk;
counts that have stopped moving; medians with their ranges."""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from labkit.lab import Lab

WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


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


def wrk(url: str, host: str | None, seconds: float, connections: int,
        threads: int = 2) -> dict[str, float]:
    """A closed-loop saturation run: requests/s, p50 and p99 (ms), and the failed requests
    (non-2xx/3xx answers and socket errors)."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    if host:
        command[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30,
                         check=True).stdout

    def latency(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if found is None:
            raise RuntimeError(f"wrk printed no {label}th percentile:\n{out}")
        return float(found.group(1)) * WRK_UNITS[found.group(2)]

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        out)
    return {
        "requests/s": float(rate.group(1)),
        "p50 ms": latency("50"),
        "p99 ms": latency("99"),
        "errors": float((int(non_2xx.group(1)) if non_2xx else 0)
                        + (sum(map(int, sockets.groups())) if sockets else 0)),
    }


def settled(read: Callable[[], int], quiet_s: float, timeout: float = 60.0) -> int:
    """`read()` once it has not changed for `quiet_s` seconds (e.g. a store's accepted count
    while exporters flush their last batches)."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return value
    raise RuntimeError(f"the count never settled for {quiet_s:g} s in {timeout:g} s")


def median_range(values: list[float], digits: int = 2) -> str:
    """'median [min-max]' of `values`, with thousands separators."""
    return (f"{statistics.median(values):>9,.{digits}f} "
            f"[{min(values):,.{digits}f}-{max(values):,.{digits}f}]")  # fmt: skip


def print_medians(runs: list[dict[str, float]], indent: str = "  ", digits: int = 2) -> None:
    """One line per figure of `runs` (one dict per run): median [min-max]."""
    width = max(map(len, runs[0]))
    for name in runs[0]:
        print(f"{indent}{name:>{width}}  {median_range([run[name] for run in runs], digits)}")

"""Durations: one grammar and one meaning for every labkit argument that takes a time.

A duration is either a number of **seconds** (``0.25``) or a string in Go's duration
syntax, the one Traefik and Prometheus use (``"250ms"``, ``"1.5s"``, ``"1m30s"``). A bare
number always means seconds, whichever call it is given to.
"""

from __future__ import annotations

import math
import re

from .errors import LabError

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}
EXAMPLES = "a number of seconds or a string such as '250ms', '1.5s', '1m30s'"


def seconds(value: object, what: str = "duration", *, positive: bool = False,
            maximum: float | None = None) -> float:
    """`value` as seconds: 0.25, "250ms" and "0.25s" all give 0.25.

    Refuses (LabError naming what is valid) booleans, NaN, infinities, negative values,
    zero when `positive`, values above `maximum`, and strings outside the grammar.
    """
    if isinstance(value, bool):
        raise LabError(f"{what} must be {EXAMPLES}, got {value!r}")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        result = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(value.strip()))
    else:
        raise LabError(f"{what} must be {EXAMPLES}, got {value!r}")
    if not math.isfinite(result) or result < 0:
        raise LabError(f"{what} must be a finite, non-negative duration, got {value!r}")
    if positive and result == 0:
        raise LabError(f"{what} must be greater than zero, got {value!r}")
    if maximum is not None and result > maximum:
        raise LabError(f"{what} must be at most {go(maximum)}, got {value!r}")
    return result


def milliseconds(value: object, what: str = "duration", *, positive: bool = False,
                 maximum: float | None = None) -> float:
    """Like `seconds`, in milliseconds (for APIs that speak ms)."""
    return seconds(value, what, positive=positive, maximum=maximum) * 1000


def go(value: float) -> str:
    """Seconds as the shortest Go duration string that Traefik reads back the same: 0.25 ->
    "250ms", 2 -> "2s", 90 -> "90s"."""
    ms = round(value * 1000, 3)
    if ms != int(ms):
        return f"{round(value * 1e6)}us"
    ms = int(ms)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"

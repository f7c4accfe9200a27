"""What Traefik can hold, checked before anything is written to it.

A value outside these ranges passes etcd but not Traefik's parser: it would fail only at the
read-back, seconds later, with a parse error that does not say what is valid. Durations are
Go's `time.Duration` (whole nanoseconds, at most 2^63 - 1 of them); counts and weights are Go
ints, kept to 32 bits as everywhere else in labkit.
"""

from __future__ import annotations

from . import durations
from .errors import LabError

MAX_INT = 2**31 - 1
MIN_DURATION_S = 1e-6  # labkit writes seconds in whole microseconds: less would read as zero
MAX_DURATION_S = 2562047 * 3600.0  # 2562047h: Go's longest duration is just over it
DURATION_RANGE = "from 1us to 2562047h"


def duration(what: str, value: object) -> str:
    """The duration as Traefik reads it: a string as given, seconds as a Go duration."""
    seconds = durations.seconds(value, what, positive=True)
    if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
        raise LabError(f"{what} must be {DURATION_RANGE} (what Traefik can hold), "
                       f"got {value!r}")
    return value.strip() if isinstance(value, str) else durations.go(seconds)


def count(what: str, value: object) -> str:
    """A whole number from 1 to MAX_INT, as Traefik reads it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
        raise LabError(f"{what} must be a whole number from 1 to {MAX_INT}, got {value!r}")
    return str(value)

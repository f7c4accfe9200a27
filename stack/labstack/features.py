"""RouteGuide's features: 50 named places, generated the same way in every process.

Made in code from a fixed seed, so routeguide and its clients (web, notebooks)
agree on the points without a data file or a network.
"""

from __future__ import annotations

import random
from typing import NamedTuple

_ADJECTIVES = ("Old", "North", "Quiet", "Red", "Long", "Stone", "Green", "High", "Lower", "Cedar")
_PLACES = ("Mill", "Bridge", "Hill", "Pond", "Ridge", "Road", "Farm", "Harbor", "Chapel", "Field")
_SEED = 50051
COUNT = 50
# Around the original RouteGuide data (northern New Jersey), in degrees * 10**7.
_LAT_RANGE = (400_000_000, 420_000_000)
_LON_RANGE = (-750_000_000, -730_000_000)


class Feature(NamedTuple):
    name: str
    latitude: int
    longitude: int


def _generate() -> tuple[Feature, ...]:
    rng = random.Random(_SEED)
    names = [f"{adjective} {place}" for adjective in _ADJECTIVES for place in _PLACES]
    rng.shuffle(names)
    return tuple(
        Feature(name, rng.randrange(*_LAT_RANGE), rng.randrange(*_LON_RANGE))
        for name in sorted(names[:COUNT])
    )


FEATURES = _generate()

"""Notebook switches: the parameter that turns a notebook's pattern off.

Every pattern notebook names one in its `parameters` cell (e.g. `retries = True`); the
suite runs the notebook once more with it False and expects the notebook's own check to
fail, which proves the check measures the pattern and not something that holds anyway.
"""

from __future__ import annotations

from .errors import LabError


def switch(name: str, value: object) -> bool:
    """`value` if it is True or False, else a LabError naming the valid values."""
    if not isinstance(value, bool):
        raise LabError(f"switch {name} must be True (the pattern on) or False (off), "
                       f"got {value!r}")
    return value

"""The checked exercises of each notebook (labkit.course.exercises): module nNN holds notebook
NN's, as a tuple EXERCISES."""

from __future__ import annotations

import functools
import importlib
import pkgutil

from ..exercises import Exercise


@functools.cache
def catalogue() -> dict[str, Exercise]:
    """Every notebook's exercises by id, imported on first use: the checks import the demos,
    whose gRPC stubs `make setup` generates after it first imports labkit."""
    modules = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name[0] == "n")
    return {e.id: e for name in modules
            for e in importlib.import_module(f"{__name__}.{name}").EXERCISES}

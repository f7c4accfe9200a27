"""What every benchmark needs: a quiet Lab on a running stack, left as it was found."""

from __future__ import annotations

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

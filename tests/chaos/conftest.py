"""A lab dressed with something of every kind a strike must leave intact (labkit.chaos.dress)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labkit.chaos import dress, undress
from labkit.lab import Lab


@pytest.fixture(scope="module")
def dressed(session_lab: Lab) -> Iterator[Lab]:
    session_lab.up()
    dress(session_lab)
    yield session_lab
    session_lab.up()
    undress(session_lab)


@pytest.fixture
def chaos_lab(dressed: Lab) -> Lab:
    """The dressed lab, running and supervised (up() restores what a failed test broke)."""
    dressed.up()
    return dressed

"""The live stack for integration and notebook tests: started once, stopped at the end."""

import pytest

from labkit.lab import Lab


@pytest.fixture(scope="session")
def session_lab():
    lab = Lab()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def lab(session_lab):
    """The running stack; `up` is idempotent, so this is cheap when it already runs."""
    session_lab.up()
    return session_lab

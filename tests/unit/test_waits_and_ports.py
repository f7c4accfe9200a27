import os
import socket

import pandas as pd
import pytest

from labkit.errors import LabError, LabTimeout
from labkit.ports import ensure_free, is_free
from labkit.topology import Endpoint
from labkit.waits import wait_for


def test_wait_returns_the_first_truthy_value():
    values = iter([0, None, "ready"])
    assert wait_for(lambda: next(values), what="x", timeout=2, interval=0.01) == "ready"


def test_wait_takes_a_dataframe_once_it_has_rows():
    frames = iter([pd.DataFrame(), pd.DataFrame({"a": [1]})])
    assert len(wait_for(lambda: next(frames), what="rows", timeout=2, interval=0.01)) == 1


def test_wait_timeout_explains_itself():
    def probe():
        raise ConnectionRefusedError("port closed")

    with pytest.raises(LabTimeout) as caught:
        wait_for(probe, what="the thing", timeout=0.2, interval=0.05,
                 diagnose=lambda: "thing: FATAL\nlast log line", hint="check the thing")
    message = str(caught.value)
    assert "waiting for the thing" in message
    assert "ConnectionRefusedError: port closed" in message
    assert "last log line" in message
    assert "Hint: check the thing" in message


def test_busy_port_is_reported_with_its_holder():
    with socket.socket() as held:
        held.bind(("127.0.8.200", 0))
        held.listen()
        endpoint = Endpoint("127.0.8.200", held.getsockname()[1])
        assert not is_free(endpoint)
        with pytest.raises(LabError) as caught:
            ensure_free([("traefik web", endpoint)])
    message = str(caught.value)
    assert f"traefik web needs {endpoint.address}" in message
    assert f"pid {os.getpid()}" in message
    assert "nothing was started" in message
    assert is_free(endpoint)


def test_a_lab_error_in_the_probe_ends_the_wait_at_once():
    def crashed():
        raise LabError("traefik failed to start: FATAL")

    with pytest.raises(LabError, match="FATAL") as caught:
        wait_for(crashed, what="traefik", timeout=30)
    assert not isinstance(caught.value, LabTimeout)

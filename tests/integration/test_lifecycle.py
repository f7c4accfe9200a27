"""up/down: idempotent, refuses busy ports, leaves nothing behind."""

import socket
import sys

import psutil
import pytest

from labkit.backends import local_config
from labkit.backends.local import INFRA_ENDPOINTS
from labkit.backends.local_config import STATE_ENV
from labkit.errors import LabError
from labkit.ports import is_free
from labkit.topology import INFRA

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]


def stack_processes(state):
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.environ().get(STATE_ENV) == str(state):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_up_twice_changes_nothing(lab):
    before = lab.status()[["component", "pid"]]
    lab.up()
    assert lab.status()[["component", "pid"]].equals(before)


def test_down_stops_everything_and_frees_every_port(lab):
    state = lab.backend.state
    assert stack_processes(state)
    lab.down()
    assert stack_processes(state) == []
    busy = [what for what, ep in INFRA_ENDPOINTS.items() if not is_free(ep)]
    assert busy == []
    lab.down()  # nothing running: a no-op, not an error


def test_up_with_a_busy_port_names_it_and_starts_nothing(lab):
    lab.down()
    with socket.socket() as squatter:
        squatter.bind((INFRA.gateway.host, INFRA.gateway.port))
        squatter.listen()
        with pytest.raises(LabError) as caught:
            lab.up()
    message = str(caught.value)
    assert f"traefik web needs {INFRA.gateway.address}" in message
    assert f"pid {psutil.Process().pid}" in message
    assert not lab.backend.is_up()
    assert stack_processes(lab.backend.state) == []


def test_a_component_that_fails_to_start_is_reported_with_its_log(lab, monkeypatch):
    lab.down()
    real_commands = local_config.infra_commands

    def broken_traefik(state):
        commands = real_commands(state)
        commands["traefik"] = [sys.executable, "-c", "print('bad static config'); exit(1)"]
        return commands

    monkeypatch.setattr(local_config, "infra_commands", broken_traefik)
    with pytest.raises(LabError, match="traefik failed to start") as caught:
        lab.up()
    assert "bad static config" in str(caught.value), "the error should carry the log tail"
    assert not lab.backend.is_up()
    assert stack_processes(lab.backend.state) == []

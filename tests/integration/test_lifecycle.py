"""up/down: idempotent, refuses busy ports, leaves nothing behind."""

import socket
import stat
import sys
from pathlib import Path

import psutil
import pytest

from labkit import block_claims, blocks, privileges
from labkit.backends import local_config
from labkit.backends.local import LocalBackend
from labkit.backends.local_config import STATE_ENV
from labkit.errors import LabError
from labkit.lab import Lab
from labkit.ports import is_free
from labkit.topology import infra

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
    # the block is free again, and the state folder no longer claims it; another lab (the
    # suite's others start labs in the first free block) may take it at once: then every
    # address still busy is that lab's, which claimed the block before binding any
    busy = [what for what, ep in infra().named().items() if not is_free(ep)]
    taken_by = block_claims.holder(lab.backend.block)
    assert busy == [] or (taken_by is not None and str(state) not in taken_by), (busy, taken_by)
    assert taken_by is None or str(state) not in taken_by
    assert blocks.recorded(state) is None
    lab.down()  # nothing running: a no-op, not an error


def test_a_running_lab_holds_its_block_and_refuses_it_to_another(lab, tmp_path, monkeypatch):
    block = lab.backend.block
    monkeypatch.setenv(blocks.BLOCK_ENV, str(block))  # another lab asking for this very block
    held = block_claims.holder(block)
    assert held is not None and f"pid {lab.backend.supervisor.pid()}" in held
    assert str(lab.backend.state) in held and blocks.recorded(lab.backend.state) == block
    # its files, and supervisord's control socket among them, are its user's alone (run by
    # root, its programs' user may pass through it by name: labkit.privileges)
    locked = 0o700 if privileges.service_user() is None else 0o710
    assert stat.S_IMODE(lab.backend.state.stat().st_mode) == locked
    other = Lab(LocalBackend(tmp_path / "other"), progress=lambda _msg: None)  # LABKIT_BLOCK
    try:
        with pytest.raises(LabError) as refused:
            other.up()
        assert f"block {block} " in str(refused.value) and str(lab.backend.state) in str(
            refused.value)
        assert not other.backend.is_up() and stack_processes(tmp_path / "other") == []
    finally:
        other.close()
    assert (lab.status()["state"] == "RUNNING").all()


def squat_a_free_block(state: Path) -> tuple[int, socket.socket]:
    """A free block, and a socket on its gateway's address: from then on no other lab picks
    that block (its addresses are busy). Bound while holding the block's claim, so that a lab
    starting meanwhile (another test's, another user's) either takes the block before (then
    the next one) or sees the address busy."""
    taken: set[int] = set()
    while len(taken) < 5:
        block = block_claims.first_free(excluding=taken)
        claim = block_claims.try_claim_unused(block, state)
        if claim is None:
            taken.add(block)
            continue
        squatter = socket.socket()
        try:
            squatter.bind((infra(block).gateway.host, infra(block).gateway.port))
        except OSError:
            squatter.close()
            taken.add(block)
            continue
        finally:
            claim.release()
        squatter.listen()
        return block, squatter
    raise AssertionError(f"blocks {sorted(taken)} were each taken before the test could squat")


def test_up_with_a_busy_port_names_it_and_starts_nothing(lab, tmp_path, monkeypatch):
    # a lab asked to use a block whose address is busy must refuse, naming the holder
    block, squatter = squat_a_free_block(tmp_path / "squatter")
    gateway = infra(block).gateway
    with squatter:
        monkeypatch.setenv(blocks.BLOCK_ENV, str(block))
        other = Lab(LocalBackend(tmp_path / "other"), progress=lambda _msg: None)
        try:
            with pytest.raises(LabError) as caught:
                other.up()
            assert not other.backend.is_up()
        finally:
            other.close()
            blocks.use(lab.backend.block)  # this process's lab again
    message = str(caught.value)
    assert f"traefik web needs {gateway.address}" in message
    assert f"pid {psutil.Process().pid}" in message
    assert stack_processes(tmp_path / "other") == []
    assert block_claims.holder(block) is None  # the refused lab let its claim go


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

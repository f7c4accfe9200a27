"""The `labkit` command's answers that need no stack: help, bad names, a stopped lab's logs."""

import os
import subprocess
import sys

import psutil
import pytest

from labkit import cli
from labkit.backends.base import ORPHANED
from labkit.backends.local import LocalBackend
from labkit.backends.local_config import PROGRAM_ENV, STATE_ENV
from labkit.topology import MAX_REPLICAS, SERVICES
from labkit.waits import wait_for


@pytest.fixture
def state(tmp_path, monkeypatch):
    """A state folder with last run's logs and no supervisord: a stopped lab."""
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "echo-1.log").write_text("first line\nlast line\n")
    return tmp_path


def test_logs_of_an_unknown_program_fails_naming_the_programs(state, capsys):
    assert cli.main(["logs", "nope"]) != 0
    error = capsys.readouterr().err
    assert "'nope'" in error
    for program in ("supervisord", "traefik", "etcd", "prometheus", "promsd", "telemetry",
                    *(f"{name}-{MAX_REPLICAS}" for name in SERVICES)):
        assert program in error


def test_logs_of_a_program_that_never_ran_says_which_logs_exist(state, capsys):
    assert cli.main(["logs", "echo-7"]) != 0
    assert "logs available: echo-1" in capsys.readouterr().err


def test_scale_help_lists_the_services_and_the_replica_range(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["scale", "--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    assert all(name in help_text for name in SERVICES)
    assert f"0 to {MAX_REPLICAS}" in help_text


def test_logs_of_a_stopped_lab_are_labelled_with_the_file_time(state, capsys):
    assert cli.main(["logs", "echo-1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("labkit: the lab is stopped; this log is from its last run")
    assert "last written 20" in out
    assert "last line" in out


def test_logs_of_a_running_lab_carry_no_stopped_label(state, capsys, monkeypatch):
    monkeypatch.setattr(LocalBackend, "is_up", lambda self: True)
    assert cli.main(["logs", "echo-1"]) == 0
    out = capsys.readouterr().out
    assert "stopped" not in out
    assert "last line" in out


def test_up_for_an_owner_that_is_not_running_fails_and_starts_nothing(state, capsys):
    gone = psutil.Popen(["true"])
    gone.wait()
    assert cli.main(["up", "--owner", str(gone.pid)]) != 0
    assert f"--owner {gone.pid}: no such process" in capsys.readouterr().err
    assert not (state / "owner.lock").exists() and not (state / "supervisor.sock").exists()


def test_a_lab_whose_supervisor_died_is_named_with_the_fix_and_down_reaps_it(state, capsys):
    """An orphan (a process of this state folder's lab, no supervisord) is ORPHANED in status,
    scale refuses naming the fix, and down kills it and waits until it is gone."""
    env = {**os.environ, STATE_ENV: str(state), PROGRAM_ENV: "echo-1"}
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        wait_for(lambda: LocalBackend(state).orphans(), what="the orphan to show", timeout=10)
        assert cli.main(["status"]) == 0
        out = capsys.readouterr().out
        assert "lost its supervisor" in out and "'labkit up'" in out
        assert "echo-1" in out and ORPHANED in out and str(orphan.pid) in out
        assert cli.main(["scale", "echo", "2"]) == 1
        assert "lost its supervisor" in capsys.readouterr().err
        assert cli.main(["down"]) == 0
        assert orphan.poll() is not None, "down returns once the orphan is gone"
        assert "reaped 1 leftover process" in capsys.readouterr().out
    finally:
        orphan.kill()
        orphan.wait()

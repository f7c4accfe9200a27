"""Exercise 02.3's check on a written log (no live lab): the learner's lines must be in
echo-4's log, one leaving the registry before one stopping the server."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from labkit.course import exercises
from labkit.course.checks import n02
from labkit.errors import LabError

EXERCISES = {exercise.id: exercise for exercise in n02.EXERCISES}
SHUTDOWN = ["serving", "registered", "withdrawn: instance not ready",
            "shutdown: not ready, deregistering", "shutdown: draining",
            "shutdown: stopping server, letting in-flight requests finish", "shutdown: done"]


def check(log: Path, lines: object) -> bool:
    lab = SimpleNamespace(backend=SimpleNamespace(log_path=lambda program: log))
    return exercises.check(lab, "02.3", EXERCISES, lines=lines).passed  # type: ignore[arg-type]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "echo-4.log"
    path.write_text("".join(json.dumps({"msg": m, "instance": "echo-4"}) + "\n"
                            for m in SHUTDOWN) + "a line a library printed\n")
    return path


def test_leaving_the_registry_then_stopping_the_server_passes(log: Path) -> None:
    assert check(log, ["shutdown: not ready, deregistering", SHUTDOWN[5]])
    whole = log.read_text().splitlines()
    assert check(log, [whole[2], whole[5]])  # whole lines; the registration loop's withdrawal


@pytest.mark.parametrize("lines", [
    ["shutdown: done", "shutdown: done"],  # no deregistration
    ["shutdown: not ready, deregistering", "shutdown: draining"],  # no server stop
    ["deregistered before stopping", SHUTDOWN[5]],  # not in the log
])
def test_lines_that_do_not_show_the_order_fail(log: Path, lines: list[str]) -> None:
    assert not check(log, lines)


def test_a_log_without_a_stop_asks_for_the_scale_in(tmp_path: Path) -> None:
    assert not check(tmp_path / "echo-4.log", ["shutdown: not ready, deregistering", "x"])


@pytest.mark.parametrize("bad", ["shutdown: done", ["one line"], [1, 2], None])
def test_lines_is_a_list_of_two_or_more_strings(log: Path, bad: object) -> None:
    with pytest.raises(LabError, match="lines is a list of two or more lines of echo-4's log"):
        check(log, bad)

"""Notebook 17's checks on a scratch copy of the lab (no live lab): each says what is missing
until its exercise is done, and passes only once it is."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from labkit import audit
from labkit.audit import configs
from labkit.course import exercises
from labkit.course.checks import n17
from labkit.errors import LabError
from labkit.paths import REPO

pytestmark = pytest.mark.timeout(120)
EXERCISES = {exercise.id: exercise for exercise in n17.EXERCISES}


def check(exercise_id: str, **answers: object) -> bool:
    lab = None  # these checks read files, not a lab
    return exercises.check(lab, exercise_id, EXERCISES, **answers).passed  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scratch")
    shutil.copytree(REPO / "labkit" / "backends", root / "labkit" / "backends")
    configs.generate(root / "configs")
    return root


def test_accepting_shell_true_needs_the_planted_finding_and_an_entry_for_it(scratch):
    mine = scratch / "baseline.json"
    shutil.copy(REPO / audit.BASELINE, mine)
    assert not check("17.1", scratch=scratch, baseline=mine)  # nothing planted
    local = scratch / "labkit/backends/local.py"
    local.write_text(local.read_text() + "\n\ndef run_hook(command: str) -> None:\n"
                     "    subprocess.run(command, shell=True, check=True)\n")
    assert not check("17.1", scratch=scratch, baseline=mine)  # planted, not accepted
    assert not check("17.1", scratch=scratch, baseline=REPO / audit.BASELINE)
    shell = next(f for f in audit.run(scratch, tools=("bandit",), baseline=mine).findings
                 if f.rule == "B602")
    data = json.loads(mine.read_text())
    data["accepted"].append({"tool": shell.tool, "rule": shell.rule,
                             "fingerprint": shell.fingerprint, "reason": "a hook"})
    mine.write_text(json.dumps(data))
    assert check("17.1", scratch=scratch, baseline=mine)


def test_a_password_passes_only_in_supervisords_hashed_form(scratch):
    conf = scratch / "configs/supervisord.conf"
    assert not check("17.2", scratch=scratch)  # no password planted
    conf.write_text(conf.read_text() + "\n[inet_http_server]\nport=127.0.0.1:9001\n"
                    "username=lab\npassword=changeme\n")
    assert not check("17.2", scratch=scratch)
    digest = hashlib.sha1(b"changeme").hexdigest()
    conf.write_text(conf.read_text().replace("password=changeme", "password={SHA}" + digest))
    assert check("17.2", scratch=scratch)


def test_the_lifecycle_flag_is_a_new_medium_row_that_does_not_fail_the_gate(scratch):
    assert not check("17.3", scratch=scratch, gate_fails=False)  # no flag, no row
    conf = scratch / "configs/supervisord.conf"
    conf.write_text(conf.read_text().replace("--web.route-prefix=/ ",
                                             "--web.route-prefix=/ --web.enable-lifecycle ", 1))
    assert not check("17.3", scratch=scratch, gate_fails=True)
    assert check("17.3", scratch=scratch, gate_fails=False)


@pytest.mark.parametrize(("exercise_id", "answers", "message"), [
    ("17.2", {"scratch": "/nonexistent"}, "scratch is the notebook's scratch folder"),
    ("17.1", {"baseline": 3}, "baseline is the path of your copy"),
    ("17.3", {"gate_fails": "no"}, "gate_fails is True or False"),
])
def test_bad_answers_say_what_is_valid(scratch, exercise_id, answers, message):
    with pytest.raises(LabError, match=message):
        check(exercise_id, **{"scratch": scratch, **answers})

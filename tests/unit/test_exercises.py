"""Checked exercises: ids and answers are validated naming what is valid, verdicts say what
is missing, and the catalogue agrees with the notebooks and their worked solutions."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from labkit import paths
from labkit.course import exercises
from labkit.course.checks import catalogue
from labkit.course.exercises import Exercise, Findings, said_text, share, yes_no
from labkit.errors import LabError


def half_done(_lab: object, rate: float) -> Findings:
    found = Findings(seen=[f"rate {rate}"])
    found.require(rate < 0.01, f"still {rate:.1%} errors")
    return found


TOY = {e.id: e for e in (
    Exercise("05.1", "make it fail less", "because retries", half_done, ("rate",)),
    Exercise("05.2", "why?", "because the gateway is shared"),
)}


@pytest.mark.parametrize("bad", ["5.1", "05", "05.x", 5.1, None, " 05.1"])
def test_a_malformed_id_says_how_ids_look(bad: object) -> None:
    with pytest.raises(LabError, match=r"as in '05\.3'"):
        exercises.find(bad, TOY)


def test_an_unknown_exercise_names_the_notebooks_exercises() -> None:
    with pytest.raises(LabError, match=r"no exercise 05\.9; its exercises: 05\.1 \(make it "
                                       r"fail less\); 05\.2 \(why\?\)"):
        exercises.find("05.9", TOY)


def test_a_notebook_without_checked_exercises_names_those_with() -> None:
    with pytest.raises(LabError, match="notebook 07 has no checked exercises; notebooks "
                                       "with checked exercises: 05"):
        exercises.find("07.1", TOY)


def test_answers_are_the_ones_the_exercise_asks_for() -> None:
    with pytest.raises(LabError, match=r"takes the answers rate=\.\.\."):
        exercises.check(None, "05.1", TOY)  # type: ignore[arg-type]
    with pytest.raises(LabError, match=r"takes the answers rate=\.\.\."):
        exercises.check(None, "05.1", TOY, rate=0.5, speed=2)  # type: ignore[arg-type]
    with pytest.raises(LabError, match="conceptual: it takes no answers"):
        exercises.check(None, "05.2", TOY, rate=0.5)  # type: ignore[arg-type]


def test_a_verdict_says_what_is_missing_and_the_answer_only_once_solved() -> None:
    not_yet = exercises.check(None, "05.1", TOY, rate=0.05)  # type: ignore[arg-type]
    assert not not_yet.passed
    assert "seen: rate 0.05" in str(not_yet) and "missing: still 5.0% errors" in str(not_yet)
    assert "because retries" not in str(not_yet)
    solved = exercises.check(None, "05.1", TOY, rate=0.0)  # type: ignore[arg-type]
    assert solved.passed and "Solved. because retries" in str(solved)
    concept = exercises.check(None, "05.2", TOY)  # type: ignore[arg-type]
    assert not concept.passed and "Answer: because the gateway is shared" in str(concept)


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "5%"])
def test_a_share_is_between_0_and_1(bad: object) -> None:
    with pytest.raises(LabError, match=r"failed is a share \(0.05 for 5%\), between 0 and 1"):
        share(bad, "failed")


def test_numpy_answers_count_as_numbers_and_yes_or_no() -> None:
    assert share(np.float64(0.25), "failed") == 0.25 and share(np.int64(1), "failed") == 1.0
    assert yes_no(np.bool_(False), "throttled", "held back?") is False


@pytest.mark.parametrize("bad", [0, 1, "yes", None])
def test_yes_or_no_is_a_bool(bad: object) -> None:
    with pytest.raises(LabError, match=r"throttled is True or False \(held back\?\)"):
        yes_no(bad, "throttled", "held back?")


def test_a_message_is_an_exception_or_its_text_with_whitespace_folded() -> None:
    assert said_text(LabError("refused:\n  busy"), "refusal", "what it said") == "refused: busy"
    with pytest.raises(LabError, match="refusal is what it said: the exception itself"):
        said_text(42, "refusal", "what it said")


def exercises_section(notebook: str) -> str:
    (path,) = paths.NOTEBOOKS.glob(f"{notebook}-*.ipynb")
    text = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                   if c["cell_type"] == "markdown")
    return text.split("## Exercises", 1)[1]


def test_each_checked_exercise_is_in_its_notebook_which_shows_its_check() -> None:
    for exercise in catalogue().values():
        section = exercises_section(exercise.notebook)
        number = int(exercise.id.split(".")[1])
        assert re.search(rf"^{number}\. ", section, re.M), f"{exercise.id}: no such exercise"
        assert f'lab.check("{exercise.id}"' in section, (
            f"notebook {exercise.notebook}'s Exercises should show lab.check(\"{exercise.id}\")")


def test_each_checked_notebook_has_a_solution_that_checks_every_hands_on_exercise() -> None:
    solved = {p.name[:2]: p for p in paths.solutions()}
    for exercise in catalogue().values():
        assert exercise.notebook in solved, f"{exercise.id}: no notebooks/solutions/ notebook"
        if exercise.check is None:
            continue
        source = solved[exercise.notebook].read_text()
        # before solving (the check must fail) and after (it must pass)
        assert source.count(f'lab.check(\\"{exercise.id}\\"') >= 2, exercise.id

"""The learning path (notebooks/README.md, each notebook's opening lines) agrees with the
notebooks' metadata, and its checks name what is wrong."""

from __future__ import annotations

import dataclasses
import json

import pytest

from labkit.course import learning_path
from labkit.course.learning_path import Notebook


def test_the_repositorys_learning_path_is_current() -> None:
    assert learning_path.problems() == [], (
        "after changing a notebook or its metadata.lab.requires, run "
        "`python -m labkit.course.learning_path write` (after `make test`)")


@pytest.fixture
def found() -> list[Notebook]:
    return learning_path.notebooks()


def test_every_notebook_opens_with_its_objectives(found: list[Notebook]) -> None:
    for n in found:
        opening = "".join(json.loads(n.path.read_text())["cells"][0]["source"])
        assert "**Objectives.** After this notebook you can:\n\n- " in opening, n.path.name


def test_a_prerequisite_that_comes_later_is_refused_naming_the_valid_ones(found) -> None:
    later = [dataclasses.replace(n, requires=("07",)) if n.number == "05" else n for n in found]
    (wrong,) = learning_path.problems(later)
    assert "05-timeouts-and-retries.ipynb: requires '07', not an earlier notebook" in wrong
    assert "'04'" in wrong and "'05'" not in wrong


def test_a_notebook_without_prerequisites_and_an_unmeasured_one_are_named(found) -> None:
    changed = [dataclasses.replace(n, requires=(), run_seconds=0) if n.number == "06" else n
               for n in found]
    assert learning_path.problems(changed) == [
        "06-circuit-breaker.ipynb: metadata.lab.requires names no notebook",
        "06-circuit-breaker.ipynb: metadata.lab.run_seconds is not measured"]


def test_a_track_missing_a_prerequisite_or_too_long_is_named(found, monkeypatch) -> None:
    monkeypatch.setattr(learning_path, "TRACKS", [("short", 5, ("00", "01", "05"))])
    wrong = learning_path.problems(found)
    assert "track 'short': 05 needs ['03'], not in the track" in wrong
    assert any(w.startswith("track 'short' takes") and "more than its 5" in w for w in wrong)


def test_a_changed_time_makes_the_opening_line_and_the_index_stale(found) -> None:
    slower = [dataclasses.replace(n, run_seconds=n.run_seconds + 600) if n.number == "12"
              else n for n in found]
    wrong = learning_path.problems(slower)
    stale = "12-blue-green-and-canary.ipynb: its opening cell lacks"
    assert any(w.startswith(stale) for w in wrong)
    assert "notebooks/README.md: its learning path is not current" in wrong

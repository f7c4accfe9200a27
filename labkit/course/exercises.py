"""Checked exercises: `lab.check("05.3")` inspects the live lab and says what is missing.

An exercise is either hands-on (it changes the lab or asks for a number: its check measures
the lab and judges the learner's answer against it) or conceptual (`lab.check` explains the
answer). A check returns Findings, what it saw and what is still missing, each a sentence
with the numbers; the Verdict shows them, and the explained answer once nothing is missing.

Each notebook's exercises live in labkit/course/checks/nNN.py, numbered as the notebook's
Exercises section numbers them ("05.3" is notebook 05's third exercise).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LabError

if TYPE_CHECKING:
    from ..lab import Lab

EXERCISE_ID = re.compile(r"(\d\d)\.(\d+)")


@dataclass
class Findings:
    """What a check saw (numbers, settings) and what is still missing, in sentences."""

    seen: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def require(self, holds: bool, missing: str) -> bool:
        """Note `missing` unless `holds`; returns `holds`, so a check can stop early."""
        if not holds:
            self.missing.append(missing)
        return holds


Check = Callable[..., Findings]


@dataclass(frozen=True)
class Exercise:
    id: str  # "05.3": the notebook's number, then the exercise's in its Exercises section
    task: str  # what to do, in one line
    answer: str  # the explained answer: shown by a passing check, or for a conceptual one
    check: Check | None = None  # (lab, **answers) -> Findings; None: a conceptual exercise
    answers: tuple[str, ...] = ()  # the keyword answers the check needs ("failed", ...)

    @property
    def notebook(self) -> str:
        return self.id.split(".")[0]


@dataclass(frozen=True)
class Verdict:
    exercise: Exercise
    findings: Findings | None  # None: a conceptual exercise, nothing to check

    @property
    def passed(self) -> bool:
        return self.findings is not None and not self.findings.missing

    def __str__(self) -> str:
        lines = [f"Exercise {self.exercise.id}: {self.exercise.task}"]
        if self.findings is None:
            return "\n".join([*lines, f"Answer: {self.exercise.answer}"])
        lines += [f"  seen: {s}" for s in self.findings.seen]
        lines += [f"  missing: {m}" for m in self.findings.missing]
        lines.append(f"Solved. {self.exercise.answer}" if self.passed
                     else "Not yet: fix what is missing, then check again.")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:  # IPython shows it as text
        printer.text(str(self))


def number(value: object, name: str, low: float, high: float, meaning: str) -> float:
    """A learner's numeric answer in [low, high], or an error saying what it should be."""
    # numpy's numbers too: an answer computed from a DataFrame
    if (isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating)
            or not low <= value <= high):
        raise LabError(f"{name} is {meaning}, between {low:g} and {high:g}; got {value!r}")
    return float(value)


def share(value: object, name: str) -> float:
    """A learner's share (0.05 for 5%), or an error saying so."""
    return number(value, name, 0, 1, "a share (0.05 for 5%)")


def choice(value: object, name: str, options: Collection[str]) -> str:
    """A learner's answer among named options ("echo", ...), or an error naming them."""
    if value not in options:
        raise LabError(f"{name} is one of {', '.join(map(repr, sorted(options)))}; got {value!r}")
    return str(value)


def yes_no(value: object, name: str, question: str) -> bool:
    """A learner's True or False (numpy's too: a comparison of a DataFrame's numbers)."""
    if not isinstance(value, bool | np.bool_):
        raise LabError(f"{name} is True or False ({question}); got {value!r}")
    return bool(value)


def said_text(value: object, name: str, what: str) -> str:
    """A message a learner saw, as an exception or its text, with whitespace folded."""
    if not isinstance(value, str | BaseException):
        raise LabError(f"{name} is {what}: the exception itself or its text; got {value!r}")
    return " ".join(str(value).split())


def check(lab: Lab, exercise_id: str, catalogue: Mapping[str, Exercise],
          **answers: object) -> Verdict:
    """Run exercise `exercise_id`'s check against `lab` with the learner's `answers`."""
    exercise = find(exercise_id, catalogue)
    if exercise.check is None:
        if answers:
            raise LabError(f"exercise {exercise.id} is conceptual: it takes no answers "
                           f"(got {', '.join(sorted(answers))}); lab.check('{exercise.id}') "
                           "explains its answer")
        return Verdict(exercise, None)
    unknown, absent = set(answers) - set(exercise.answers), set(exercise.answers) - set(answers)
    if unknown or absent:
        wanted = ", ".join(f"{name}=..." for name in exercise.answers)
        raise LabError(f"exercise {exercise.id} takes the answers {wanted}: "
                       f"lab.check('{exercise.id}', {wanted})")
    return Verdict(exercise, exercise.check(lab, **answers))


def find(exercise_id: object, catalogue: Mapping[str, Exercise]) -> Exercise:
    """The exercise, or an error naming the notebook's exercises (or the notebooks that
    have checked exercises)."""
    match = EXERCISE_ID.fullmatch(exercise_id) if isinstance(exercise_id, str) else None
    if match is None:
        raise LabError(f"an exercise id is the notebook's number and the exercise's, as in "
                       f"'05.3'; got {exercise_id!r}")
    if match.group(0) in catalogue:
        return catalogue[match.group(0)]
    notebook = match.group(1)
    same = [e for e in catalogue.values() if e.notebook == notebook]
    if same:
        listed = "; ".join(f"{e.id} ({e.task})" for e in same)
        raise LabError(f"notebook {notebook} has no exercise {exercise_id}; its exercises: "
                       f"{listed}")
    notebooks = sorted({e.notebook for e in catalogue.values()})
    raise LabError(f"notebook {notebook} has no checked exercises; notebooks with checked "
                   f"exercises: {', '.join(notebooks)}")

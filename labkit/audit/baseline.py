"""The baseline: findings accepted on purpose, each with a one-line reason.

`make audit` fails on a *new* high finding, one the baseline does not accept. A finding is
matched by tool, rule and fingerprint (a file and its code line, a config key, a package),
not by line number, so unrelated edits do not turn an accepted finding into a new one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LabError
from .findings import Finding

FIELDS = ("tool", "rule", "fingerprint", "reason")


@dataclass(frozen=True)
class Accepted:
    tool: str
    rule: str
    fingerprint: str
    reason: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.tool, self.rule, self.fingerprint


@dataclass(frozen=True)
class Baseline:
    path: Path | None
    entries: dict[tuple[str, str, str], Accepted] = field(default_factory=dict)

    def reason(self, finding: Finding) -> str | None:
        """Why `finding` is accepted, or None: it is new."""
        entry = self.entries.get(finding.key)
        return None if entry is None else entry.reason

    def stale(self, findings: Iterable[Finding], tools: Iterable[str]) -> list[Accepted]:
        """Entries of `tools` (those that checked) that matched no finding: remove them."""
        seen = {finding.key for finding in findings}
        ran = set(tools)
        return [e for key, e in self.entries.items() if e.tool in ran and key not in seen]


def load(path: Path) -> Baseline:
    """The baseline at `path`, or a LabError saying what is wrong with it and what is valid."""
    example = ('{"accepted": [{"tool": "bandit", "rule": "B602", "fingerprint": '
               '"labkit/x.py: subprocess.run(cmd, shell=True)", "reason": "why it is fine"}]}')
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"no audit baseline at {path}; an empty one is "
                       f'{{"accepted": []}}, an entry looks like {example}') from None
    except json.JSONDecodeError as error:
        raise LabError(f"{path} is not valid JSON ({error}); expected {example}") from None
    entries = data.get("accepted") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise LabError(f"{path} must hold an object with an 'accepted' list, like {example}")
    accepted: dict[tuple[str, str, str], Accepted] = {}
    for number, entry in enumerate(entries, start=1):
        problem = _problem(entry)
        if problem:
            raise LabError(f"{path}, entry {number}: {problem}; an entry looks like {example}")
        item = Accepted(**{name: entry[name] for name in FIELDS})
        accepted[item.key] = item
    return Baseline(path, accepted)


def _problem(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return f"expected an object with {', '.join(FIELDS)}, got {entry!r}"
    missing = [name for name in FIELDS if not isinstance(entry.get(name), str) or
               not entry[name].strip()]
    if missing:
        return f"{', '.join(missing)} missing or empty (each of {', '.join(FIELDS)} is text)"
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        return f"unknown fields {', '.join(unknown)}; the fields are {', '.join(FIELDS)}"
    if "\n" in entry["reason"]:
        return "the reason must be one line"
    return None

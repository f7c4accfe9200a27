"""The code: bandit, Python's security linter, over the project's own sources.

Bandit, not ruff's `S` rules (the same checks, ported): bandit rates every finding's
severity itself (low, medium, high), and the audit's gate is "no new high finding"; with
ruff the project would keep its own table of severities per rule.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .findings import CHECKED, FAILED, Finding, ToolRun
from .runner import AuditToolError, run_module, tail

TOOL = "bandit"
# what ships and runs: the learner's library, the services, benchmarks, Jupyter and hub
# configuration; tests are not audited (they start servers and assert by design)
SOURCES = ("labkit", "stack", "bench", "jupyter", "workshop")


def scan(root: Path, sources: tuple[str, ...] = SOURCES, timeout: float = 120) -> ToolRun:
    """Bandit over `sources` (those that exist under `root`); paths relative to `root`."""
    started = time.monotonic()
    present = [name for name in sources if (root / name).exists()]
    if not present:
        return ToolRun(TOOL, FAILED, f"none of {', '.join(sources)} exists under {root}")
    try:
        # --ignore-nosec: a finding is accepted in the baseline, with its reason, not by a
        # comment in the code that silences it
        done = run_module("bandit", ["-r", *present, "-f", "json", "-q", "--ignore-nosec"],
                          timeout=timeout, cwd=root)
        report = _parse(done.stdout, done.stderr)
    except AuditToolError as error:
        return ToolRun(TOOL, FAILED, str(error), seconds=time.monotonic() - started)
    seconds = time.monotonic() - started
    if report["errors"]:  # a file bandit could not read was not checked
        unread = ", ".join(error["filename"] for error in report["errors"])
        return ToolRun(TOOL, FAILED, f"bandit could not read {unread}", seconds=seconds)
    found = tuple(finding(root, result) for result in report["results"])
    totals = report["metrics"]["_totals"]
    files = len(report["metrics"]) - 1
    return ToolRun(TOOL, CHECKED, f"{files} files, {totals['loc']} lines under "
                   f"{', '.join(present)}", found, seconds)


def _parse(stdout: str, stderr: str) -> dict:
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict) or "_totals" not in report.get("metrics", {}) \
            or not {"results", "errors"} <= report.keys():
        raise AuditToolError(f"bandit gave no JSON report: {tail(stderr or stdout)}")
    return report


def finding(root: Path, result: dict) -> Finding:
    """One bandit result; its fingerprint is the file and the flagged line's code."""
    path, line = result["filename"], result["line_number"]
    try:
        code = (root / path).read_text().splitlines()[line - 1].strip()
    except (OSError, IndexError):
        code = result.get("code", "").strip()
    return Finding(TOOL, result["test_id"], result["issue_severity"].lower(), f"{path}:{line}",
                   f"{result['issue_text']} ({result['test_name']})", f"{path}: {code}")

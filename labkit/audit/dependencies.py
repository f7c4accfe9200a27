"""The dependencies: pip-audit over this environment's packages, against whichever
vulnerability source answers.

pip-audit's own verdict is not enough here: when its source knows none of the packages it
skips them all and still says "No known vulnerabilities found" with exit status 0. This
module counts what was really checked, and says NOT CHECKED when that is nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from .findings import CHECKED, NOT_CHECKED, Finding, ToolRun
from .runner import AuditToolError, run_module, tail

TOOL = "pip-audit"
# pip-audit's vulnerability services, tried in turn: PyPI's JSON API (one request per
# package and version), then OSV's
SOURCES = ("pypi", "osv")


@dataclass(frozen=True)
class SourceResult:
    source: str
    packages: int  # in the environment (editable ones, the project itself, are left out)
    audited: int  # looked up in the source; the others were skipped
    findings: tuple[Finding, ...] = ()
    problem: str = ""  # why nothing, or not everything, was checked


def audit(sources: tuple[str, ...] = SOURCES, timeout: float = 90) -> ToolRun:
    """The first source that checks any package decides; if none does, NOT_CHECKED, naming
    what each source answered."""
    started = time.monotonic()
    answers = []
    for source in sources:
        result = query(source, timeout)
        if result.audited:
            detail = f"{result.audited} of {result.packages} packages checked against {source}"
            if result.problem:
                detail += f" ({result.problem})"
            return ToolRun(TOOL, CHECKED, detail, result.findings, time.monotonic() - started)
        answers.append(f"{source}: {result.problem}")
    return ToolRun(TOOL, NOT_CHECKED, "no vulnerability source reachable, no package was "
                   f"checked. {'; '.join(answers)}", seconds=time.monotonic() - started)


def query(source: str, timeout: float) -> SourceResult:
    # --timeout: per request, so that a network that drops packets costs seconds, not minutes
    args = ["--local", "--skip-editable", "--format", "json", "--progress-spinner", "off",
            "--vulnerability-service", source, "--timeout", "10"]
    try:
        done = run_module("pip_audit", args, timeout=timeout)
    except AuditToolError as error:
        return SourceResult(source, 0, 0, problem=str(error))
    return parse(source, done.stdout, done.stderr)


def parse(source: str, stdout: str, stderr: str = "") -> SourceResult:
    """pip-audit's JSON report (exit status 1 also means "found some"); no report: the source
    could not be reached, and stderr says why."""
    try:
        report = json.loads(stdout)
        dependencies = report["dependencies"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return SourceResult(source, 0, 0, problem=f"unreachable: {_cause(stderr)}")
    skipped = [d for d in dependencies if "skip_reason" in d]
    audited = [d for d in dependencies if "skip_reason" not in d]
    findings = tuple(_finding(d, vuln) for d in audited for vuln in d.get("vulns", []))
    problem = ""
    if skipped:
        problem = (f"{len(skipped)} of {len(dependencies)} packages skipped, e.g. "
                   f"{skipped[0]['skip_reason']!r}")
    return SourceResult(source, len(dependencies), len(audited), findings, problem)


def _cause(stderr: str) -> str:
    """The exception pip-audit died of, without its traceback or the retry noise."""
    last = tail(stderr, lines=1)
    if "Failed to " in last:
        last = last[last.index("Failed to "):].rstrip("\"')")
        last += ")" * (last.count("(") - last.count(")"))
    return last[:200]


def _finding(dependency: dict, vuln: dict) -> Finding:
    name, version = dependency["name"], dependency["version"]
    fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
    about = " ".join(str(vuln.get("description", "")).split())[:120]
    # pip-audit rates no severity: a known vulnerability in what the lab runs counts as high,
    # so a new one stops CI until it is upgraded or accepted with a reason
    return Finding(TOOL, vuln["id"], "high", f"{name}=={version}",
                   f"{about} (fixed in: {fixed})", name)

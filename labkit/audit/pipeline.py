"""The security pipeline: every tool at once, one report, one verdict.

The verdict: a new high finding (one the baseline does not accept) fails the audit, and so
does a tool that broke (it certifies nothing). A check that could not be made here (no
vulnerability source reachable) is said plainly in the report, and does not fail it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import paths
from ..errors import LabError
from . import code, configs, dependencies, sbom
from .baseline import Accepted, Baseline, load
from .findings import CHECKED, FAILED, NOT_CHECKED, SEVERITIES, Finding, ToolRun

TOOLS = (code.TOOL, dependencies.TOOL, sbom.TOOL, configs.TOOL)
BASELINE = ".audit-baseline.json"
OUT = Path("build") / "audit"  # under the audited root; git-ignored
COLUMNS = ["tool", "rule", "severity", "location", "message", "status", "reason"]


@dataclass(frozen=True)
class Report:
    runs: tuple[ToolRun, ...]
    baseline: Baseline

    @property
    def findings(self) -> list[Finding]:
        return [finding for run in self.runs for finding in run.findings]

    def table(self) -> pd.DataFrame:
        """Every finding, high first and new before accepted: status "new" or "accepted", with
        the baseline's reason."""
        rows = [{"tool": f.tool, "rule": f.rule, "severity": f.severity, "location": f.location,
                 "message": f.message, "status": "new" if self.baseline.reason(f) is None
                 else "accepted", "reason": self.baseline.reason(f) or ""}
                for f in self.findings]
        frame = pd.DataFrame(rows, columns=COLUMNS)
        order = frame["severity"].map(SEVERITIES.index)
        return (frame.assign(_order=order).sort_values(["_order", "status", "tool", "location"],
                                                       ascending=[True, False, True, True])
                .drop(columns="_order").reset_index(drop=True))

    def checks(self) -> pd.DataFrame:
        """What each tool could check: status (checked, NOT CHECKED, FAILED) and why."""
        return pd.DataFrame([{"tool": r.tool, "status": r.status, "findings": len(r.findings),
                              "seconds": round(r.seconds, 1), "detail": r.detail}
                             for r in self.runs])

    @property
    def new_high(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "high" and self.baseline.reason(f)
                is None]

    @property
    def failed(self) -> list[ToolRun]:
        return [run for run in self.runs if run.status == FAILED]

    @property
    def stale(self) -> list[Accepted]:
        """Baseline entries of tools that checked, which matched nothing: to remove."""
        checked = [run.tool for run in self.runs if run.status == CHECKED]
        return self.baseline.stale(self.findings, checked)

    @property
    def exit_code(self) -> int:
        """0: passed; 1: a new high finding; 2: a tool failed, so nothing is certified."""
        return 2 if self.failed else 1 if self.new_high else 0

    def summary(self) -> str:
        counts = []
        for severity in SEVERITIES:
            of = [f for f in self.findings if f.severity == severity]
            new = [f for f in of if self.baseline.reason(f) is None]
            counts.append(f"{len(of)} {severity} ({len(new)} new)")
        verdict = {0: "PASSED: no new high finding",
                   1: f"FAILED: {len(self.new_high)} new high finding(s), not in the baseline",
                   2: f"FAILED: {', '.join(r.tool for r in self.failed)} could not run"}
        unchecked = [f"{run.tool} NOT CHECKED ({run.detail.split('.')[0]})"
                     for run in self.runs if run.status == NOT_CHECKED]
        return "; ".join([f"{len(self.findings)} findings: {', '.join(counts)}. "
                          f"{verdict[self.exit_code]}", *unchecked])


def run(root: Path = paths.REPO, *, tools: Collection[str] = TOOLS,
        baseline: Path | None = None, configs_folder: Path | None = None,
        out: Path | None = None) -> Report:
    """Audit `root` with `tools` (all by default) in parallel; `baseline` defaults to
    `root`/.audit-baseline.json; `configs_folder`: a folder of configurations to check
    instead of the lab's, generated; `out`: where the SBOM goes (`root`/build/audit)."""
    tools = [tools] if isinstance(tools, str) else list(tools)
    unknown = [tool for tool in tools if tool not in TOOLS]
    if unknown:
        raise LabError(f"unknown audit tools {unknown}; the tools are: {', '.join(TOOLS)}")
    accepted = load(baseline or root / BASELINE)
    jobs: dict[str, Callable[[], ToolRun]] = {
        code.TOOL: lambda: code.scan(root),
        dependencies.TOOL: dependencies.audit,
        sbom.TOOL: lambda: sbom.write(out or root / OUT, root / "pyproject.toml"),
        configs.TOOL: lambda: configs.audit(configs_folder),
    }
    chosen = [tool for tool in TOOLS if tool in tools]
    if not chosen:
        return Report((), accepted)
    # the tools wait on the network (pip-audit) or on one core each: side by side
    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
        futures = [pool.submit(jobs[tool]) for tool in chosen]
        return Report(tuple(future.result() for future in futures), accepted)

"""What every audit tool reports, in one shape: findings, and what the tool could check."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LabError

SEVERITIES = ("high", "medium", "low")  # worst first
# What a tool's run established: CHECKED, or NOT_CHECKED when something outside the project
# (an unreachable vulnerability source) left nothing checked, or FAILED when the tool itself
# broke: a FAILED run certifies nothing, so the audit fails with it.
CHECKED, NOT_CHECKED, FAILED = "checked", "NOT CHECKED", "FAILED"


@dataclass(frozen=True)
class Finding:
    tool: str  # "bandit", "pip-audit", "configs"
    rule: str  # the tool's rule: "B602", a vulnerability id, "listen-beyond-loopback"
    severity: str  # one of SEVERITIES
    location: str  # where to look: "labkit/x.py:12", "traefik.yml entryPoints.web.address"
    message: str
    # what identifies the finding when lines move: the file and its code line, the config
    # key, the package; the baseline matches on it
    fingerprint: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise LabError(f"severity must be one of {', '.join(SEVERITIES)}, "
                             f"got {self.severity!r}")

    @property
    def key(self) -> tuple[str, str, str]:
        return self.tool, self.rule, self.fingerprint


@dataclass(frozen=True)
class ToolRun:
    """One tool's run: its findings, and what it could check (`status`, said in `detail`)."""

    tool: str
    status: str  # CHECKED, NOT_CHECKED or FAILED
    detail: str
    findings: tuple[Finding, ...] = ()
    seconds: float = 0.0

"""The security pipeline behind `make audit`: bandit over the code, pip-audit over the
dependencies, a CycloneDX SBOM of the environment, and checks of the lab's generated
configurations; one table of findings; a baseline of accepted ones, each with its reason.

    from labkit import audit
    report = audit.run()        # every tool, side by side
    report.checks()             # what each tool could check, and what it could not
    report.table()              # one row per finding: tool, rule, severity, location, ...
    report.new_high             # what fails CI: high findings the baseline does not accept
"""

from .findings import CHECKED, FAILED, NOT_CHECKED, SEVERITIES, Finding, ToolRun
from .pipeline import BASELINE, TOOLS, Report, run

__all__ = ["BASELINE", "CHECKED", "FAILED", "NOT_CHECKED", "SEVERITIES", "TOOLS", "Finding",
           "Report", "ToolRun", "run"]

"""The SBOM: every package of this environment, in CycloneDX JSON (cyclonedx-py)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .findings import CHECKED, FAILED, ToolRun
from .runner import AuditToolError, run_module, tail

TOOL = "sbom"
FILE = "sbom.cdx.json"


def write(out: Path, pyproject: Path | None = None, timeout: float = 120) -> ToolRun:
    """Write the environment's SBOM to `out`/sbom.cdx.json, validated against CycloneDX's
    schema; `pyproject` describes the root component (the project)."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    target = out / FILE
    # written aside, then renamed: two audits at once never leave a half-written SBOM
    partial = out / f".{FILE}.{os.getpid()}"
    args = ["environment", "--output-format", "JSON", "--output-file", str(partial)]
    if pyproject is not None and pyproject.exists():
        args += ["--pyproject", str(pyproject)]
    try:
        done = run_module("cyclonedx_py", [*args, sys.executable], timeout=timeout)
        if done.returncode != 0 or not partial.exists():
            raise AuditToolError(f"cyclonedx-py exited {done.returncode}: {tail(done.stderr)}")
        bom = json.loads(partial.read_text())
        os.replace(partial, target)
    except (AuditToolError, json.JSONDecodeError) as error:
        partial.unlink(missing_ok=True)
        return ToolRun(TOOL, FAILED, str(error), seconds=time.monotonic() - started)
    components = len(bom.get("components", []))
    return ToolRun(TOOL, CHECKED, f"{components} packages, CycloneDX {bom['specVersion']}, "
                   f"schema-valid: {target}", seconds=time.monotonic() - started)

"""Running one audit tool: `python -m <tool>` in this environment, bounded in time."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from ..errors import LabError


class AuditToolError(LabError):
    """A tool could not run, or its output made no sense: nothing it was to check is known."""


def tail(text: str | bytes | None, lines: int = 3) -> str:
    """The last lines of a tool's output, for an error message."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    kept = [line for line in (text or "").splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


def run_module(module: str, args: list[str], *, timeout: float,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m module args`: the tools come with the project's dev extras, in its venv.
    The exit status is the caller's to read (the tools use 1 for "found something")."""
    if importlib.util.find_spec(module) is None:
        raise AuditToolError(f"{module} is not installed in {sys.prefix}: 'make setup' "
                             f"installs it (pyproject.toml's dev extras)")
    try:
        return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                              text=True, timeout=timeout, cwd=cwd, check=False)
    except subprocess.TimeoutExpired as error:
        raise AuditToolError(f"{module} did not finish within {timeout:.0f} s; its last "
                             f"output: {tail(error.stderr)}. Hint: a busy machine, or a "
                             f"network that drops packets instead of refusing") from None

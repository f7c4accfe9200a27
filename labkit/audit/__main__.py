"""`python -m labkit.audit` (`make audit`): the report as text; exit status 0 (passed),
1 (a new high finding) or 2 (a tool could not run)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from .. import paths
from ..errors import LabError
from .pipeline import TOOLS, Report, run

WIDTH = 70  # a message's characters in the printed table (the report holds all of it)


def columns(frame: pd.DataFrame) -> list[str]:
    """`frame` as left-aligned text columns, one line per row, the header first."""
    cells = [list(frame.columns)] + frame.astype(str).values.tolist()
    widths = [max(len(row[i]) for row in cells) for i in range(len(frame.columns))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in cells]


def render(report: Report, seconds: float) -> str:
    lines = [f"audit: {len(report.runs)} tools in {seconds:.1f} s; baseline "
             f"{report.baseline.path} ({len(report.baseline.entries)} accepted)", ""]
    lines += [f"  {run.tool:<10} {run.status:<12} {run.seconds:5.1f} s  {run.detail}"
              for run in report.runs]
    table = report.table().drop(columns="reason")
    table["message"] = table["message"].str.slice(0, WIDTH)
    lines += ["", *(columns(table) if len(table) else ["no findings"])]
    if report.stale:
        lines += ["", "baseline entries that matched nothing (remove them):"]
        lines += [f"  {e.tool} {e.rule} {e.fingerprint}" for e in report.stale]
    return "\n".join([*lines, "", report.summary()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.audit", description=__doc__)
    parser.add_argument("--root", type=Path, default=paths.REPO, help="the tree to audit")
    parser.add_argument("--baseline", type=Path, help="default: <root>/.audit-baseline.json")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated, from: {', '.join(TOOLS)}")
    parser.add_argument("--configs", type=Path,
                        help="check this folder's configurations (a running lab's .lab) "
                             "instead of generating the lab's")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        report = run(args.root, tools=[t.strip() for t in args.tools.split(",") if t.strip()],
                     baseline=args.baseline, configs_folder=args.configs)
    except LabError as error:
        print(f"audit: {error}", file=sys.stderr)
        return 2
    print(render(report, time.monotonic() - started))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`'s closing table: every benchmark's headline figures, median [range] of runs.

The README quotes this table. Run: .venv/bin/python bench/summary.py (after the benchmarks)
"""

from __future__ import annotations

import psutil
from common import median_range
from results import RESULTS, read


def main() -> None:
    rows = read()
    if not rows:
        print(f"no benchmark results in {RESULTS}: run 'make bench'")
        return
    print(f"\nsummary: median [min-max] over each figure's runs, {psutil.cpu_count()} cores")
    width = max(len(f"{r['bench']}: {r['figure']}") for r in rows)
    for row in rows:
        name = f"{row['bench']}: {row['figure']}"
        runs = f"{len(row['runs'])} runs"
        print(f"  {name:<{width}}  {median_range(row['runs']):>22} {row['unit']:<8} {runs:>7}"
              + (f"  {row['note']}" if row["note"] else ""))


if __name__ == "__main__":
    main()

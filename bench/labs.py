"""Several labs on one machine: how many learners a workshop server holds.

For 1, 2 and 4 labs started at the same moment (each in its own state folder, each taking the
first free address block, as learners on one JupyterHub would): the time until every lab is
healthy, each lab's memory (RSS of its supervisor and everything under it), and notebook 01's
run time in each lab while the others run it too. Medians and ranges over --runs runs; the
last column is notebook 01's time against one lab alone in the same run.

Run: .venv/bin/python bench/labs.py [--runs 3] [--labs 1 2 4]
Stops every lab it started; leaves a lab already running (e.g. block 0) alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from common import median_range
from results import header, record

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01-load-balancing.ipynb"
BIN = Path(sys.executable).parent


def lab_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_BLOCK"}  # first free block
    return {**env, "LABKIT_STATE_DIR": str(state), "PATH": f"{BIN}:{env['PATH']}"}


def timed(command: list[str], env: dict[str, str], timeout: float) -> float:
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.monotonic() - started


def lab_rss_mib(state: Path) -> float:
    root = psutil.Process(int((state / "supervisord.pid").read_text()))
    return sum(p.memory_info().rss for p in (root, *root.children(recursive=True))) / 2**20


def one_run(count: int, base: Path) -> tuple[float, list[float], list[float]]:
    """(seconds until all `count` labs are healthy, RSS MiB per lab, notebook 01 s per lab)."""
    states = [base / f"lab-{i}" for i in range(count)]
    up = [sys.executable, "-m", "labkit.cli", "up"]
    try:
        with ThreadPoolExecutor(count) as pool:
            started = time.monotonic()
            list(pool.map(lambda s: timed(up, lab_env(s), 120), states))
            healthy = time.monotonic() - started
            time.sleep(2)  # let every process finish its start-up allocations
            rss = [lab_rss_mib(s) for s in states]
            notebook = list(pool.map(lambda s: timed(
                [str(BIN / "papermill"), str(NOTEBOOK), str(s / "01-out.ipynb"), "--cwd",
                 str(NOTEBOOK.parent), "-k", "python3", "--no-progress-bar"],
                lab_env(s), 600), states))
        return healthy, rss, notebook
    finally:
        for state in states:
            subprocess.run([sys.executable, "-m", "labkit.cli", "down"], env=lab_env(state),
                           capture_output=True, timeout=120, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--labs", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    results: dict[int, list[tuple[float, list[float], list[float]]]] = {n: [] for n in args.labs}
    with tempfile.TemporaryDirectory(prefix="bench-labs-") as tmp:
        for run in range(1, args.runs + 1):
            for count in args.labs:
                results[count].append(one_run(count, Path(tmp) / f"run{run}-{count}"))
                print(f"run {run}: {count} lab(s) done", file=sys.stderr, flush=True)

    alone = [nb for _, _, nbs in results.get(1, []) for nb in nbs]
    memory = psutil.virtual_memory().total / 2**30
    print(header(f"labs on one machine ({memory:.1f} GiB), medians (ranges) over "
                 f"{args.runs} runs"))
    print(f"{'labs':>4}  {'all healthy s':>16}  {'RSS MiB per lab':>16}  "
          f"{'notebook 01 s per lab':>22}  {'vs 1 lab':>8}")
    for count, rows in results.items():
        healthy = [h for h, _, _ in rows]
        rss = [r for _, rs, _ in rows for r in rs]
        notebook = [n for _, _, ns in rows for n in ns]
        ratio = f"{statistics.median(notebook) / statistics.median(alone):.2f}x" if alone else "-"
        print(f"{count:>4}  {median_range(healthy, 1):>16}  {median_range(rss, 0):>16}  "
              f"{median_range(notebook, 1):>22}  {ratio:>8}")
        record("labs", f"{count} lab(s): all healthy", healthy, "s")
        record("labs", f"{count} lab(s): notebook 01 per lab", notebook, "s")


if __name__ == "__main__":
    main()

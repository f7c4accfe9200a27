"""The services' request path: what telemetry costs echo, directly and through the gateway.

One echo instance, started by this script with a chosen telemetry setting in place of the
lab's echo-1 (same address, same registry keys, so Traefik routes to it), saturated by wrk
(`wrk -t2 -cC -dS`) on its own address and through Traefik. Settings, in the same run:
  - off:        OTEL_SDK_DISABLED=true, the OpenTelemetry switch an operator would flip: the
                SDK hands out no-op tracers and loggers, nothing is sampled or exported (the
                lab's sampling at 0, so Traefik records nothing either);
  - sample 0.1: the lab's sampling at 10% (lab.telemetry(sample=0.1)), its default;
  - sample 1:   every request traced and exported.
The lab's setting is end to end: echo reads it when it starts (LAB_TELEMETRY_FILE), Traefik
samples the requests that reach it untraced (wrk's) at that rate and echo follows its
decision. The spans and log records the store accepted per request are printed beside each
figure (through the gateway, a traced request is 2 of Traefik's spans + echo's). The lab's
setting is restored afterwards.
Each figure is a median [min-max] over --runs runs; the ratios are per run, against "off".
--stack runs another checkout's services (e.g. before a change:
`git archive <commit> stack | tar -x -C /tmp/before`, then --stack /tmp/before/stack).
Run: flock /tmp/labstack.lock .venv/bin/python bench/request_path.py [--runs N] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil
from common import print_medians, running_lab, settled, wrk
from results import record_all

from labkit.backends.local_config import instance_environment
from labkit.lab import Lab
from labkit.processes import stop_child
from labkit.topology import SERVICES, infra
from labkit.waits import wait_for

ROOT = Path(__file__).resolve().parents[1]
ECHO = SERVICES["echo"]
SLOT = 1
# name: (echo's extra environment, the lab's trace sample)
SETTINGS = {
    "off": ({"OTEL_SDK_DISABLED": "true"}, 0.0),
    "sample 0.1": ({}, 0.1),
    "sample 1": ({}, 1.0),
}
# what make bench's closing table shows (bench/summary.py), against issue #14's targets
HEADLINE = ("direct off: requests/s", "direct sample 0.1: requests/s",
            "direct sample 1: requests/s", "gateway sample 1: requests/s",
            "direct sample 1/off: requests/s", "direct sample 1/off: p99 ms")
QUIET_S = {"direct": 2.5, "gateway": 8.0}  # services export every 1 s, Traefik every 5 s


def start_echo(lab: Lab, stack: Path, setting: dict[str, str], log: Path) -> subprocess.Popen:
    """echo-1 from `stack` as labkit starts it (its environment), plus `setting`; once the
    gateway routes to it."""
    env = {**os.environ, "PYTHONPATH": str(stack),
           **instance_environment(lab.backend.state, ECHO, SLOT), **setting}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", ECHO.module], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)

    def routed() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"echo exited with {process.returncode}:\n{log.read_text()}")
        answer = httpx.get(f"{infra().gateway.url}/", headers={"Host": "echo.localhost"},
                           timeout=1)
        return answer.status_code == 200

    try:
        wait_for(routed, what="the gateway to route to the bench's echo", timeout=20,
                 interval=0.1, diagnose=log.read_text)
    except BaseException:
        stop_child(process, grace=10)
        raise
    return process


def accepted(lab: Lab) -> tuple[int, int]:
    """Spans and log records the store has accepted so far."""
    counts = lab.store.stats()["accepted"]
    return counts.get("spans", 0), counts.get("logs", 0)


def measure(lab: Lab, echo: psutil.Process, path: str, seconds: float,
            connections: int) -> dict[str, float]:
    """wrk on echo's own address or through Traefik; echo's CPU time and what the store
    received, per request (CPU time depends less than throughput on what else runs here)."""
    spans_before, logs_before = accepted(lab)
    cpu_before = sum(echo.cpu_times()[:2])
    if path == "direct":
        result = wrk(f"{ECHO.endpoint(SLOT).url}/", None, seconds, connections)
    else:
        result = wrk(f"{infra().gateway.url}/", "echo.localhost", seconds, connections)
    requests = result["requests/s"] * seconds
    spans = settled(lambda: accepted(lab)[0], QUIET_S[path]) - spans_before
    # after the export settled: the spans' encoding and posting are the requests' cost too
    cpu_us = (sum(echo.cpu_times()[:2]) - cpu_before) * 1e6 / requests
    logs = accepted(lab)[1] - logs_before
    return {**result, "echo CPU us/req": cpu_us, "spans/req": spans / requests,
            "logs/req": logs / requests}


def one_run(lab: Lab, stack: Path, seconds: float, connections: int,
            tmp: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name, (setting, sample) in SETTINGS.items():
        lab.telemetry(sample=sample)  # the gateway's sampler, and the file echo reads
        echo = start_echo(lab, stack, setting, tmp / f"echo-{name}.log")
        try:
            for path in ("direct", "gateway"):
                found = measure(lab, psutil.Process(echo.pid), path, seconds, connections)
                for figure, value in found.items():
                    figures[f"{path} {name}: {figure}"] = value
        finally:
            stop_child(echo, grace=10)
    for path in ("direct", "gateway"):
        for name in list(SETTINGS)[1:]:
            for figure in ("requests/s", "p99 ms", "echo CPU us/req"):
                figures[f"{path} {name}/off: {figure}"] = (
                    figures[f"{path} {name}: {figure}"] / figures[f"{path} off: {figure}"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--stack", type=Path, default=ROOT / "stack",
                        help="the folder holding the labstack package to run")
    args = parser.parse_args()
    if not (args.stack / "labstack" / "echo.py").is_file():
        parser.error(f"--stack {args.stack} holds no labstack/echo.py")

    runs = []
    with running_lab() as lab, tempfile.TemporaryDirectory(prefix="request-path-") as tmp:
        before = lab.telemetry()["sample"]
        lab.scale("echo", 1)
        lab.stop("echo", SLOT)  # the bench's echo takes its place (heal restarts the lab's)
        try:
            for _ in range(args.runs):
                runs.append(one_run(lab, args.stack, args.seconds, args.connections, Path(tmp)))
        finally:
            lab.telemetry(sample=before)

    print(f"echo's request path, services from {args.stack}")
    print(f"wrk -t2 -c{args.connections} -d{args.seconds:g}s, one echo instance, "
          f"{psutil.cpu_count()} cores; telemetry: off = OTEL_SDK_DISABLED=true and the lab's "
          f"sampling at 0, sample R = the lab's sampling at R (Traefik decides for wrk's "
          f"requests, echo follows), exported to the lab's store; median [min-max] over "
          f"{args.runs} runs")
    print_medians(runs)
    record_all("request path", [{k: run[k] for k in HEADLINE} for run in runs])


if __name__ == "__main__":
    main()

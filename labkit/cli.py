"""The `labkit` command: up, down, status, scale, logs."""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from . import links, ownership
from .backends.local_config import CERTS_PROGRAM
from .errors import LabError
from .lab import Lab
from .topology import INFRA_COMPONENTS, MAX_REPLICAS, SERVICES, infra


def _programs() -> str:
    """Every program the stack runs, as a learner would type it."""
    instances = ", ".join(f"{name}-1..{name}-{MAX_REPLICAS}" for name in SERVICES)
    return f"supervisord, {', '.join(INFRA_COMPONENTS)}, {CERTS_PROGRAM}, {instances}"


def _is_program(name: str) -> bool:
    if name in ("supervisord", CERTS_PROGRAM) or name in INFRA_COMPONENTS:
        return True
    service_name, _, slot = name.rpartition("-")
    return service_name in SERVICES and slot.isdigit() and 1 <= int(slot) <= MAX_REPLICAS


def _logs(lab: Lab, program: str | None, lines: int) -> None:
    logged = sorted(p.stem for p in (lab.backend.state / "logs").glob("*.log"))
    if lab.backend.log_path("supervisord").exists():  # root's, beside the programs' logs
        logged.insert(0, "supervisord")
    if program is None:
        print("logs available:", ", ".join(logged) or "none (is the stack up?)")
        return
    if not _is_program(program):
        raise LabError(f"no program called {program!r}; the programs are: {_programs()}")
    path = lab.backend.log_path(program)
    if not path.exists():
        raise LabError(f"{program} has no log: it has not run since the last 'labkit up'; "
                       f"logs available: {', '.join(logged) or 'none'}")
    if not lab.backend.is_up():
        written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
        print(f"labkit: the lab is stopped; this log is from its last run "
              f"(last written {written})")
    print(lab.backend.log_tail(program, lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack (idempotent)")
    up.add_argument("--owner", type=int, metavar="PID",
                    help="stop the lab when process PID (a Jupyter server) exits; "
                         "binder/start uses it")
    commands.add_parser("down", help="stop every process of the stack")
    commands.add_parser("status", help="components and instances, with state and address")
    scale = commands.add_parser("scale", help="run N instances of a service")
    scale.add_argument("service", help=f"one of: {', '.join(SERVICES)}")
    scale.add_argument("replicas", type=int, help=f"how many instances, 0 to {MAX_REPLICAS}")
    logs = commands.add_parser("logs", help="tail a component's log (no name: list them)")
    logs.add_argument("program", nargs="?", help=f"one of: {_programs()}")
    logs.add_argument("-n", "--lines", type=int, default=40)
    args = parser.parse_args(argv)

    lab = Lab()
    pd.set_option("display.width", 160)
    try:
        if args.command == "up":
            if args.owner is None:
                lab.up()
            else:
                ownership.own(lab, args.owner)
            print(f"  {links.GATEWAY:40} {infra().gateway.address} (Host: echo.localhost)")
            _print_pages()
        elif args.command == "down":
            lab.down()
        elif args.command == "status":
            frame = lab.status()
            if len(frame):
                print(f"lab in block {lab.backend.block} (127.{lab.backend.block}.0.0/16), "
                      f"state folder {lab.backend.state}")
                print(frame.to_string(index=False))
                _print_pages()
            else:
                print("the stack is not running")
        elif args.command == "scale":
            print(lab.scale(args.service, args.replicas).to_string(index=False))
        elif args.command == "logs":
            _logs(lab, args.program, args.lines)
    except LabError as error:
        print(f"labkit: error: {error}", file=sys.stderr)
        return 1
    return 0


def _print_pages() -> None:
    print("pages, through the Jupyter server (each a path under the address JupyterLab has "
          "in your browser):")
    for name, path in links.pages().items():
        print(f"  {name:40} {path}")


if __name__ == "__main__":
    sys.exit(main())

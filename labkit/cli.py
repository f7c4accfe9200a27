"""The `labkit` command: up, down, status, scale, logs."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from . import links
from .errors import LabError
from .lab import Lab
from .topology import INFRA


def _logs(lab: Lab, program: str | None, lines: int) -> None:
    if program is None:
        names = sorted(p.stem for p in (lab.backend.state / "logs").glob("*.log"))
        print("logs available:", ", ".join(names) or "none (is the stack up?)")
        return
    print(lab.backend.log_tail(program, lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the stack (idempotent)")
    commands.add_parser("down", help="stop every process of the stack")
    commands.add_parser("status", help="components and instances, with state and address")
    scale = commands.add_parser("scale", help="run N instances of a service")
    scale.add_argument("service")
    scale.add_argument("replicas", type=int)
    logs = commands.add_parser("logs", help="tail a component's log (no name: list them)")
    logs.add_argument("program", nargs="?", help="e.g. traefik, etcd, echo-1")
    logs.add_argument("-n", "--lines", type=int, default=40)
    args = parser.parse_args(argv)

    lab = Lab()
    pd.set_option("display.width", 160)
    try:
        if args.command == "up":
            lab.up()
            print(f"  {links.GATEWAY:40} {INFRA.gateway.address} (Host: echo.localhost)")
            for name, url in links.pages().items():
                print(f"  {name:40} {url}")
        elif args.command == "down":
            lab.down()
        elif args.command == "status":
            frame = lab.status()
            print(frame.to_string(index=False) if len(frame) else "the stack is not running")
        elif args.command == "scale":
            print(lab.scale(args.service, args.replicas).to_string(index=False))
        elif args.command == "logs":
            _logs(lab, args.program, args.lines)
    except LabError as error:
        print(f"labkit: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

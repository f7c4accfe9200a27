"""Run the telemetry store: python -m labstack.telemetry --db PATH [--host --port ...]."""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path

import uvicorn

from .server import MAX_BODY, MAX_RECORDS, create_app
from .storage import Settings

KEEP_ALIVE_S = 120  # seconds an idle client connection stays open


def loopback(host: str) -> str:
    """Only loopback addresses: the store has no authentication."""
    try:
        if host == "localhost" or ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{host!r} is not a loopback address (e.g. 127.0.0.1)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m labstack.telemetry", description=__doc__)
    parser.add_argument("--host", type=loopback, default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--db", type=Path, required=True, help="SQLite file (created if absent)")
    parser.add_argument(
        "--max-age",
        type=float,
        default=3600.0,
        help="seconds to keep spans and logs (default 3600)",
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=256 * 1024 * 1024,
        help="prune the oldest data while the data exceeds this (default 256 MiB)",
    )
    parser.add_argument(
        "--prune-interval",
        type=float,
        default=5.0,
        help="seconds between retention passes (default 5)",
    )
    parser.add_argument(
        "--max-body",
        type=int,
        default=MAX_BODY,
        help="largest request body, received or decompressed (default 16 MiB)",
    )
    parser.add_argument(
        "--max-pending",
        type=int,
        default=100_000,
        help="rows waiting to be written before new requests get 503 (default 100000)",
    )
    parser.add_argument(
        "--max-records",
        type=int,
        default=MAX_RECORDS,
        help="most spans or log records in one request, else 413; at most --max-pending"
        f" (default {MAX_RECORDS})",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args.db.parent.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        args.db, args.max_age, args.max_bytes, args.prune_interval, args.max_pending
    )
    uvicorn.run(
        # a request larger than --max-pending could never be queued: 413, not endless 503s
        create_app(settings, args.max_body, min(args.max_records, args.max_pending)),
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        # Longer than an exporter keeps an idle connection (Go's OTLP exporter, Traefik's: 90 s),
        # so the client always closes first. With uvicorn's 5 s, Traefik's span export (every
        # 5 s) sometimes POSTed on a connection the store was closing: that batch was lost, and
        # Traefik says nothing of export errors (one full run had 68 of 160 traces without it).
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()

"""promsd: Prometheus HTTP service discovery, answered from the etcd registry.

GET /targets returns the registered instances in http_sd format, read from
etcd at request time, so Prometheus scrapes exactly what is registered now.
promsd does not register itself; it needs only LAB_HOST, LAB_PORT, LAB_ETCD and
LAB_REGISTRY_PREFIX (where the records live, from labkit's key layout).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, urlsplit

import etcd3gw
from etcd3gw.exceptions import Etcd3Exception

from .jsonhttp import JsonHandler
from .logs import describe_error
from .runtime import bootstrap

log = logging.getLogger("labstack.promsd")

FIELDS = ("service", "instance", "version", "metrics_url", "started_at")  # what targets() reads
ETCD_TIMEOUT = 2.0  # below Prometheus' default http_sd refresh timeout


def targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """http_sd target groups, one per metrics address; the newest registration wins."""
    newest: dict[str, tuple[dict[str, Any], SplitResult]] = {}
    for record in records:
        metrics = urlsplit(record["metrics_url"])
        current = newest.get(metrics.netloc)
        if current is None or record["started_at"] > current[0]["started_at"]:
            newest[metrics.netloc] = (record, metrics)
    return [
        {
            "targets": [address],
            "labels": {
                "service": record["service"],
                "lab_instance": record["instance"],
                "version": record["version"],
                "__metrics_path__": metrics.path or "/metrics",
                # an instance on mTLS serves its metrics over it too (labkit.certs gives
                # Prometheus a client certificate)
                "__scheme__": metrics.scheme or "http",
            },
        }
        for address, (record, metrics) in sorted(newest.items())
    ]


class Registry:
    """Reads registry records from etcd; one client shared by the handler threads."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self._client = etcd3gw.client(host=host, port=port, timeout=ETCD_TIMEOUT)
        self._prefix = prefix
        self._lock = threading.Lock()  # a requests.Session is not safe across threads

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            entries = self._client.get_prefix(self._prefix)
        records = []
        for value, meta in entries:
            try:
                record = json.loads(value)
                missing = [field for field in FIELDS if field not in record]
                if missing:
                    raise ValueError(f"missing {', '.join(missing)}")
                records.append(record)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "skipping malformed registry record",
                    extra={"key": meta["key"].decode(errors="replace"), "error": str(exc)},
                )
        return records


def make_handler(registry: Registry) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/health":
                self._send(200, {"status": "alive"})
            elif self.path == "/targets":
                try:
                    self._send(200, targets(registry.records()))
                except Etcd3Exception as exc:
                    # An error (not an empty list) makes Prometheus keep its last targets.
                    log.warning("etcd unavailable", extra={"error": describe_error(exc)})
                    self._send(503, {"error": f"etcd unavailable: {type(exc).__name__}"})
            else:
                self._send(404, {"error": "not found; try /targets or /health"})

    return Handler


def main() -> None:
    settings = bootstrap(
        needs=("LAB_REGISTRY_PREFIX",),
        defaults={"LAB_SERVICE": "promsd", "LAB_SLOT": "1", "LAB_VERSION": "v1"},
        registers=False,
    )
    assert settings.registry_prefix is not None  # LAB_REGISTRY_PREFIX is needed
    registry = Registry(settings.etcd_host, settings.etcd_port, settings.registry_prefix)
    server = ThreadingHTTPServer((settings.host, settings.port), make_handler(registry))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    log.info("serving", extra={"address": settings.address})
    while not stop.wait(0.5):  # wakes up often so signals are handled promptly
        pass
    server.shutdown()
    server.server_close()
    log.info("shutdown: done")


if __name__ == "__main__":
    main()

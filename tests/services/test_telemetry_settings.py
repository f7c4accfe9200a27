"""An instance's telemetry settings: read at start from the lab's file, changed live through
the admin API (labstack.sampling), refused whole when any part is invalid."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest
from labstack.sampling import LiveRatioSampler

from .support import Etcd, Service, wait_registered

pytestmark = pytest.mark.timeout(30)


def telemetry_url(service: Service) -> str:
    return service.admin_url.removesuffix("/admin/faults") + "/admin/telemetry"


def test_an_instance_starts_with_the_labs_file_and_changes_live(etcd: Etcd, spawn,
                                                                 tmp_path: Path) -> None:
    settings = tmp_path / "telemetry-settings.json"
    settings.write_text(json.dumps({"LAB_TRACE_SAMPLE": "0.25", "LAB_LOG_LEVEL": "warning",
                                    "LAB_TRACE_KEEP_SLOWER_MS": "300.0"}))
    # the file wins over the variables: it is the lab's one setting
    echo = spawn("echo", LAB_TELEMETRY_FILE=str(settings), LAB_TRACE_SAMPLE="1")
    wait_registered(etcd, echo)
    url = telemetry_url(echo)
    started = httpx.get(url, headers=echo.admin_headers, timeout=2).json()
    assert started == {"sample": 0.25, "keep_slower_than_ms": 300.0, "log_level": "warning"}
    changed = echo.admin_put({"sample": 0, "log_level": "INFO"}, url)
    assert changed.status_code == 200
    assert changed.json() == {"sample": 0.0, "keep_slower_than_ms": 300.0, "log_level": "info"}
    assert httpx.get(url, headers=echo.admin_headers, timeout=2).json() == changed.json()


@pytest.mark.parametrize(("body", "message"), [
    ({"sample": 1.5}, "sample must be a number in 0..1"),
    ({"sample": "all"}, "sample must be a number in 0..1"),
    ({"log_level": "loud"}, "log_level must be one of debug, info, warning, error"),
    ({"keep_slower_than_ms": -1}, "keep_slower_than_ms must be a number in 0..60000"),
    ({"samples": 0.5}, "unknown setting(s) samples"),
    ({}, "send a JSON object"),
    ({"sample": 0.5, "log_level": "loud"}, "log_level must be one of"),
])
def test_a_bad_change_is_refused_whole(etcd: Etcd, spawn, body: dict, message: str) -> None:
    echo = spawn("echo")
    wait_registered(etcd, echo)
    url = telemetry_url(echo)
    before = httpx.get(url, headers=echo.admin_headers, timeout=2).json()
    refused = httpx.put(url, headers=echo.admin_headers, json=body, timeout=2)
    assert refused.status_code == 400 and message in refused.json()["error"]
    assert httpx.get(url, headers=echo.admin_headers, timeout=2).json() == before
    assert httpx.delete(url, headers=echo.admin_headers, timeout=2).status_code == 405


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
def test_the_live_sampler_keeps_its_share_of_trace_ids(rate: float) -> None:
    sampler = LiveRatioSampler(0.3)
    sampler.set_rate(rate)
    ids = [random.getrandbits(128) for _ in range(20_000)]
    kept = sum(sampler.should_sample(None, i, "GET /").decision.is_sampled() for i in ids)
    # binomial: 20,000 draws, 5 standard deviations at most 0.018
    assert abs(kept / len(ids) - rate) < 0.018, f"kept {kept} of {len(ids)} at {rate}"

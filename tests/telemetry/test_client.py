"""labkit.telemetry's errors: bad input named with the valid values, a missing store explained."""

from __future__ import annotations

import httpx
import pytest

from labkit.errors import LabError
from labkit.telemetry import Telemetry, _depths


def test_store_down_says_how_to_start_it():
    tel = Telemetry("http://127.0.5.99:4318", timeout=2)
    with pytest.raises(LabError, match=r"127\.0\.5\.99:4318 is not reachable.*labkit up"):
        tel.traces()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.traces(status="broken"), "status must be one of ok, error"),
        (lambda t: t.logs(level="loud"), "level must be one of debug, info, warning, error"),
        (lambda t: t.traces(limit=0), "limit must be a whole number from 1 to 1000"),
        (lambda t: t.logs(limit=10**6), "limit must be a whole number from 1 to 100000"),
        (lambda t: t.traces(min_duration="fast"), "min_duration must be a number of seconds or"),
        (lambda t: t.traces(since="yesterday"), "since must be unix seconds, a datetime"),
    ],
)
def test_bad_arguments_name_the_valid_values(call, message):
    with pytest.raises(LabError, match=message):
        call(Telemetry("http://127.0.5.99:4318"))  # refused before any request


def test_the_stores_own_400_message_reaches_the_learner(store):
    # finite, so labkit passes it on; beyond the store's range, so the store refuses it
    with pytest.raises(LabError, match="since must be a finite number from"):
        store.client().traces(since=1e300)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/traces?status=slow", "status must be one of ok, error"),
        ("/api/traces?min_duration_ms=abc", "min_duration_ms must be a number"),
        ("/api/traces?limit=5000", "limit must be a whole number from 1 to 1000"),
        ("/api/logs?level=verbose", "level must be one of debug, info, warning, error, critical"),
        ("/api/logs?since=yesterday", "since must be a number"),
        ("/api/traces/xyz", "32 hex characters"),
    ],
)
def test_the_query_api_answers_400_with_a_message(store, path, message):
    response = httpx.get(store.url + path, timeout=10)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_other_paths_are_404(store):
    assert httpx.get(store.url + "/api/nothing", timeout=10).status_code == 404
    assert httpx.get(store.url + "/health", timeout=10).status_code == 200


def test_depth_follows_parent_links_and_survives_orphans_and_cycles():
    ids = ["root", "child", "grandchild", "orphan", "under-orphan", "a", "b"]
    parents = ["", "root", "child", "missing", "orphan", "b", "a"]
    assert _depths(ids, parents) == [0, 1, 2, 0, 1, 1, 1]

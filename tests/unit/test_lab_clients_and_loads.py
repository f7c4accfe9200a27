"""Lab.start_load runs every accepted load at once (one past the limit is refused); Lab.close."""

import threading

import pytest

from labkit.backends.local import LocalBackend
from labkit.background import BackgroundJobs
from labkit.errors import LabError
from labkit.lab import MAX_BACKGROUND_LOADS, Lab


def test_every_accepted_job_runs_at_once_and_one_past_the_limit_is_refused():
    jobs, release = BackgroundJobs(limit=5, what="background loads"), threading.Event()
    started = threading.Semaphore(0)

    def job(n: int) -> int:
        started.release()
        release.wait(5)
        return n

    futures = [jobs.submit(job, n) for n in range(5)]
    assert all(started.acquire(timeout=2) for _ in futures), "all five run together, none queued"
    assert jobs.running() == 5
    with pytest.raises(LabError, match="5 background loads are running, the most at once is 5"):
        jobs.submit(job, 5)
    release.set()
    assert [f.result(timeout=2) for f in futures] == [0, 1, 2, 3, 4]
    assert jobs.running() == 0
    assert jobs.submit(job, 6).result(timeout=2) == 6, "finished jobs free their place"


def test_a_failing_job_reports_from_result():
    def fail() -> None:
        raise LabError("boom")

    with pytest.raises(LabError, match="boom"):
        BackgroundJobs(limit=1, what="jobs").submit(fail).result(timeout=2)


def test_start_load_runs_loads_together_up_to_the_limit(tmp_path, monkeypatch):
    lab = Lab(LocalBackend(tmp_path), progress=lambda _msg: None)
    release, running = threading.Event(), threading.Semaphore(0)

    def load(url: str, **options: object) -> str:
        running.release()
        release.wait(5)
        return url

    monkeypatch.setattr(lab, "load", load)
    try:
        with pytest.raises(LabError, match="not an HTTP or gRPC URL"):
            lab.start_load("echo.localhost")
        futures = [lab.start_load("http://echo.localhost/", rps=5)
                   for _ in range(MAX_BACKGROUND_LOADS)]
        assert all(running.acquire(timeout=2) for _ in futures)
        with pytest.raises(LabError, match=f"the most at once is {MAX_BACKGROUND_LOADS}"):
            lab.start_load("http://echo.localhost/", rps=5)
        release.set()
        assert {f.result(timeout=2) for f in futures} == {"http://echo.localhost/"}
    finally:
        release.set()
        lab.close()


def test_a_lab_closes_every_client_it_opened(tmp_path):
    with Lab(LocalBackend(tmp_path), progress=lambda _msg: None) as lab:
        clients = [lab.gateway.api, lab.policies.api, lab.prometheus.http, lab.store.http,
                   lab._admin.client, lab._deployments.api, lab.backend.gateway.api]
    assert all(client.is_closed for client in clients)

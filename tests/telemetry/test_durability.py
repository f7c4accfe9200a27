"""Nothing acknowledged is lost: a full write queue answers 503, a restart keeps the data."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from services.support import worker_host

from .conftest import now_ns, span_request, start_store, unique

PROTOBUF = "application/x-protobuf"


def test_a_full_queue_answers_503_and_every_200_is_stored(private_store):
    store = private_store("--max-pending", "300")
    service = unique("burst")
    body = span_request(service, 200, now_ns())

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: store.post("traces", body, PROTOBUF), range(64)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert 503 in codes, "64 concurrent requests of 200 spans should overflow 300 pending rows"
    assert all(r.headers.get("retry-after") for r in responses if r.status_code == 503)
    stats = store.client().stats()
    assert stats["spans"] == 200 * codes.count(200), "exactly the acknowledged spans are stored"
    assert stats["rejected"]["busy"] == codes.count(503)


def test_acknowledged_data_survives_a_restart(tmp_path):
    service = unique("durable")
    store = start_store(tmp_path, worker_host(5, 20))
    try:
        response = store.post("traces", span_request(service, 25, now_ns()), PROTOBUF)
        assert response.status_code == 200
    finally:
        store.stop()
    assert "stopped with 25 spans" in store.log_path.read_text(), "SIGTERM drains and closes"
    store = start_store(tmp_path, worker_host(5, 20))
    try:
        assert len(store.client().traces(service=service, limit=100)) == 25
    finally:
        store.stop()

"""Telemetry against the live stack: request ids, traces across every hop, clear errors."""

import logging
import uuid

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from labkit.errors import LabError
from labkit.topology import infra
from labkit.waits import wait_for

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]

HOPS = {"traefik", "web", "echo", "routeguide"}


@pytest.fixture
def gateway(lab):
    lab.heal()
    with httpx.Client(base_url=infra().gateway.url, headers={"Host": "web.localhost"},
                      timeout=5) as client:
        yield client


@pytest.fixture
def every_request_traced(lab):
    """The lab traces 10% by default: these tests follow single requests."""
    default = lab.telemetry()["sample"]
    lab.telemetry(sample=1)
    yield
    lab.telemetry(sample=default)


def request_trace(lab, request_id):
    """One request's spans, once every hop's are stored. Found from the gateway's access log
    (its one record per request): the services log failures only, successes are in traces."""
    def complete():
        trace_ids = set(lab.logs(request_id=request_id, service="traefik")["trace_id"]) - {""}
        if len(trace_ids) != 1:
            return None
        try:
            spans = lab.trace(trace_ids.pop())
        except LabError:  # not exported yet
            return None
        return spans if set(spans["service"]) >= HOPS and len(spans) >= 11 else None

    return wait_for(complete, what=f"every hop's spans of {request_id}", timeout=20,
                    interval=0.3)


def test_a_request_id_is_made_when_missing_and_kept_when_given(lab, gateway,
                                                               every_request_traced):
    generated = gateway.get("/").headers["x-request-id"]
    assert len(generated) == 32
    kept = gateway.get("/", headers={"x-request-id": "it-telemetry-1"})
    assert kept.headers["x-request-id"] == "it-telemetry-1"
    unsafe = gateway.get("/", headers={"x-request-id": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"  # replaced, not passed on
    for request_id in (generated, "it-telemetry-1"):
        spans = request_trace(lab, request_id)
        servers = spans[(spans["kind"] == "SERVER") & (spans["service"] != "traefik")]
        ids = {(row.service, row.attributes.get("request.id")) for row in servers.itertuples()}
        # web's, echo's and routeguide's server spans (web calls echo twice)
        assert ids == {(hop, request_id) for hop in HOPS - {"traefik"}}, ids


def test_the_trace_has_every_hop_with_parents_in_the_trace(lab, gateway, every_request_traced):
    gateway.get("/", headers={"x-request-id": "it-telemetry-2"})
    spans = request_trace(lab, "it-telemetry-2")
    trace_id = spans["trace_id"].iat[0]
    assert set(spans["service"]) == HOPS
    roots = spans[spans["parent_span_id"] == ""]
    assert len(roots) == 1 and roots["service"].iat[0] == "traefik"
    assert spans["parent_span_id"].drop(roots.index).isin(spans["span_id"]).all()
    listed = lab.traces(service="routeguide", since="1m", limit=1000)
    assert trace_id in set(listed["trace_id"])


def test_bad_telemetry_queries_say_what_is_valid(lab):
    with pytest.raises(LabError, match="Prometheus rejected the query.*parse error"):
        lab.metrics("sum(rate(http_requests_total[1m])")
    with pytest.raises(LabError, match="holds nothing from a service 'nope'.*traefik"):
        lab.traces(service="nope")
    with pytest.raises(LabError, match="no trace"):
        lab.trace("0" * 32)
    with pytest.raises(LabError, match="level"):
        lab.logs(level="loud")
    assert lab.logs(request_id="never-sent").empty


def test_an_application_exporting_to_the_store_is_queried_like_the_labs_own(lab):
    """Any service that sends OTLP to the store is found by name (issue #11), not only the
    lab's own; a name nothing was sent from is still refused, naming the ones that were."""
    name = f"shop-{uuid.uuid4().hex[:8]}"
    resource = Resource.create({"service.name": name})
    tracers = TracerProvider(resource=resource)
    tracers.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"{infra().telemetry.url}/v1/traces")))
    loggers = LoggerProvider(resource=resource)
    loggers.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{infra().telemetry.url}/v1/logs")))
    logger = logging.getLogger(name)
    logger.addHandler(LoggingHandler(logger_provider=loggers))
    try:
        with tracers.get_tracer("checkout").start_as_current_span("checkout"):
            logger.warning("card declined")
    finally:
        tracers.shutdown()
        loggers.shutdown()

    def found() -> tuple | None:
        traces, logs = lab.traces(service=name, since="1m"), lab.logs(service=name, since="1m")
        return (traces, logs) if len(traces) and len(logs) else None

    traces, logs = wait_for(found, what=f"{name}'s trace and log", timeout=10)
    assert traces["root_name"].tolist() == ["checkout"]
    assert logs["body"].tolist() == ["card declined"]
    with pytest.raises(LabError, match=f"holds nothing from a service 'shp'.*{name}"):
        lab.logs(service="shp")

"""TLS at the gateway and mutual TLS to every instance, on the live stack: switched on under
load without a failed request, direct callers refused in the handshake (no certificate,
another CA's, an expired one), identity headers only from the gateway, Prometheus still
scraping, certificates renewed under load without a failed request, and switched off again."""

from __future__ import annotations

import os
import ssl
import time

import grpc
import httpx
import pytest
from labstack import routeguide_pb2 as pb
from labstack import routeguide_pb2_grpc as pb_grpc
from labstack.identity import SUBJECT_HEADER

from labkit import certs
from labkit.backends.local_config import CERTS_PROGRAM, infra_name
from labkit.demos.mtls import REFUSED, client_certificates, direct_call, served_serial
from labkit.errors import LabError
from labkit.kv import etcd_client
from labkit.topology import infra, service
from labkit.waits import wait_for

from .helpers import declared_stack

pytestmark = [pytest.mark.live, pytest.mark.timeout(240)]

ECHO = "http://echo.localhost/"


@pytest.fixture
def secured(lab):
    declared_stack(lab)
    yield lab
    lab.policies.clear("echo")
    if lab.security.mtls():
        lab.security.mtls(False)
    declared_stack(lab)


def test_https_at_the_gateway_with_a_certificate_from_the_lab_ca(secured):
    lab = secured
    url = f"https://{infra().gateway_tls.address}/"
    with httpx.Client(verify=ssl.create_default_context(cafile=lab.security.ca_file),
                      timeout=5) as client:
        answer = client.get(url, headers={"Host": "echo.localhost"})
    assert answer.status_code == 200 and answer.json()["text"] == "hello"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(url, headers={"Host": "echo.localhost"}, timeout=5)  # system CAs only
    frame = lab.load("https://echo.localhost/", rps=20, seconds=1)  # labkit trusts the lab CA
    assert (frame["status"] == 200).all(), frame["error"].value_counts()


def test_mtls_on_and_off_under_load_refuses_direct_callers(secured, tmp_path):
    lab = secured
    assert lab.load(f"http://{service('echo').endpoint(1).address}/", rps=20,
                    seconds=0.5)["status"].eq(200).all(), "off: a direct call is answered"
    loads = [lab.start_load(ECHO, rps=40, seconds=40),
             lab.start_load("grpc://routeguide.localhost", rps=20, seconds=40)]
    lab.security.mtls(True)
    http_load, grpc_load = (load.result() for load in loads)
    for name, frame in (("echo", http_load), ("routeguide", grpc_load)):
        failed = frame[frame["status"] != 200]
        assert failed.empty, f"{name}: {len(failed)} of {len(frame)} requests failed while " \
                             f"instances moved to mTLS: {failed['error'].value_counts().to_dict()}"
    assert set(lab.gateway.servers("echo")) == {
        f"https://{service('echo').endpoint(s).address}" for s in (1, 2, 3)}

    # being on the network is not enough: a direct call fails, through the gateway it works
    direct = lab.load(f"http://{service('echo').endpoint(1).address}/", rps=20, seconds=0.5)
    assert (direct["status"] == 0).all(), direct["status"].value_counts()
    assert lab.load(ECHO, rps=20, seconds=0.5)["status"].eq(200).all()
    callers = client_certificates(lab, tmp_path)
    told = {caller: direct_call(lab, "echo", 1, cert) for caller, cert in callers.items()}
    # why each is refused is tests/unit/test_certs.py's (the instances' own TLS context)
    assert told == {
        "no certificate": REFUSED, "another CA's": REFUSED, "lab CA's, expired": REFUSED,
        "lab CA's, not the gateway": "HTTP/1.1 200 OK",
    }, told
    with grpc.insecure_channel(service("routeguide").endpoint(1).address) as channel, \
            pytest.raises(grpc.RpcError) as refused:
        pb_grpc.RouteGuideStub(channel).GetFeature(pb.Point(), timeout=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    # a lab-CA certificate that is not the gateway's is served, but not believed
    learner = callers["lab CA's, not the gateway"]
    forged = direct_call(lab, "echo", 1, learner, {SUBJECT_HEADER: "admin"})
    assert forged == "HTTP/1.1 403 Forbidden", forged
    lab.policies.require("echo", "echo:read")  # the gateway's identity headers still count
    token = lab.token(["echo:read"])
    with httpx.Client(timeout=5) as client:
        answer = client.get(f"{infra().gateway.url}/", headers={
            "Host": "echo.localhost", "Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["subject"] == "learner", answer.text
    lab.policies.clear("echo")

    # Prometheus scrapes the instances over mTLS with its own certificate
    wait_for(lambda: _echo_up(lab) == {1.0}, what="Prometheus to scrape echo over mTLS",
             timeout=20, diagnose=lambda: str(_echo_up(lab)))

    # renewed under load: every instance serves its new certificate, nothing fails
    assert learner is not None
    before = served_serial(lab, "echo", 1, learner)
    load = lab.start_load(ECHO, rps=40, seconds=12)
    lab.security.rotate()
    wait_for(lambda: served_serial(lab, "echo", 1, learner) not in (before, None),
             what="echo-1 to serve its renewed certificate", timeout=10)
    lab.security.rotate()
    frame = load.result()
    assert frame["status"].eq(200).all(), frame["error"].value_counts().to_dict()

    lab.security.mtls(False)
    assert lab.load(f"http://{service('echo').endpoint(1).address}/", rps=20,
                    seconds=0.5)["status"].eq(200).all(), "off again: a direct call is answered"


def test_bad_switch_values_are_refused(secured):
    with pytest.raises(LabError, match="mtls takes True"):
        secured.security.mtls("yes")
    with pytest.raises(LabError, match="lifetime must be"):
        secured.security.rotate(lifetime="5s")
    assert not secured.security.mtls()


def _echo_up(lab) -> set[float]:
    frame = lab.metrics('up{job="services", service="echo"}')
    return set(frame["value"]) if not frame.empty else set()


def test_the_certs_program_renews_what_is_due_and_points_the_gateway_at_it(secured):
    lab = secured
    state, program = lab.backend.state, infra_name(CERTS_PROGRAM)
    assert lab.backend.supervisor.info(program)["statename"] == "RUNNING"
    current = certs.generation(state)
    due = time.time() - 2 * certs.RENEW_EVERY.total_seconds()
    os.utime(certs.gateway_client_file(state, current), (due, due))  # as if long ago
    lab.backend.supervisor.stop(program, wait=True)  # it sleeps until the next renewal is due:
    lab.backend.supervisor.start(program)  # a restart makes it look now
    wait_for(lambda: certs.generation(state) == current + 1,
             what="the certs program to renew what is due", timeout=15,
             diagnose=lambda: lab.backend.log_tail("certs"))
    wanted = str(certs.gateway_client_file(state, current + 1))
    key = "traefik/http/serversTransports/echo/certificates/0/certFile"
    wait_for(lambda: _etcd_value(key) == wanted, what="the gateway's keys to follow", timeout=5)
    assert lab.load(ECHO, rps=20, seconds=0.5)["status"].eq(200).all()


def _etcd_value(key: str) -> str | None:
    found = etcd_client().get(key)
    return found[0].decode() if found else None

"""Callers with and without credentials, for notebook 15 and its tests.

    from labkit.demos.auth import callers, probe
    kinds = callers(lab)                      # name -> the headers that caller sends
    df = probe("http://echo.localhost/", kinds, n=20)   # one row per request

The bad credentials are made the way an attacker would: a token signed with a key of their
own, a real token whose claims were edited, and a real one that has expired.
"""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families

from ..auth import SERVICE, VERIFY_PATH
from ..lab import gateway_target
from ..registry import Registry
from ..tokens import claims
from ..waits import wait_for

PROBE_COLUMNS = ["caller", "status", "latency_ms", "subject", "instance"]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def signed_elsewhere(token: str) -> str:
    """The same header and claims, signed with a key the lab's auth service never made."""
    header = jwt.get_unverified_header(token)
    return jwt.encode(claims(token), Ed25519PrivateKey.generate(), algorithm="EdDSA",
                      headers={"kid": header.get("kid")})


def edited(token: str, **changes: object) -> str:
    """The token with some claims changed (e.g. scope="echo:read"), its signature kept."""
    head, _payload, signature = token.split(".")
    return f"{head}.{_b64({**claims(token), **changes})}.{signature}"


def expired(lab, scopes: list[str]) -> str:
    """A real token, one second long, returned once it has expired."""
    token = lab.token(scopes, ttl="1s")
    wait_for(lambda: time.time() >= claims(token)["exp"], what="the 1 s token to expire",
             timeout=3, interval=0.1)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def callers(lab, scope: str = "echo:read", other_scope: str = "web:read") -> dict[str, dict]:
    """The headers each kind of caller sends: none; a token signed by another key; one whose
    scope was edited in; an expired one; a valid one for another scope; a valid one; and a
    valid one with a forged identity header."""
    good = lab.token([scope], ttl="5m", subject="learner")
    other = lab.token([other_scope], ttl="5m", subject="learner")
    return {
        "no token": {},
        "another key": bearer(signed_elsewhere(good)),
        "edited scope": bearer(edited(other, scope=scope)),
        "expired": bearer(expired(lab, [scope])),
        "wrong scope": bearer(other),
        "right scope": bearer(good),
        "forged identity": {**bearer(good), "X-Auth-Subject": "admin"},
    }


def probe(url: str, kinds: dict[str, dict], n: int = 10, timeout: float = 5.0) -> pd.DataFrame:
    """`n` requests from each kind of caller, in turns; one row each: caller, status, latency,
    the subject the service says it was told (echo answers it), the instance."""
    target, host = gateway_target(url)
    rows = []
    with httpx.Client(timeout=timeout, headers={"Host": host} if host else {}) as client:
        for _ in range(n):
            for kind, headers in kinds.items():
                started = time.perf_counter()
                try:
                    response = client.get(target, headers=headers)
                    status = response.status_code
                except httpx.HTTPError:
                    response, status = None, 0
                latency = (time.perf_counter() - started) * 1000
                subject = ""
                if response is not None and status == 200:
                    body = response.json()
                    subject = body.get("subject", "") if isinstance(body, dict) else ""
                rows.append({"caller": kind, "status": status, "latency_ms": latency,
                             "subject": subject, "instance": response.headers.get(
                                 "x-instance", "") if response is not None else ""})
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)


def verify_totals(registry: Registry) -> tuple[float, float]:
    """(verify calls answered, seconds spent answering them) so far, summed over the auth
    instances from their own RED metrics (each instance's /metrics, read now: no scrape
    interval to wait for). Two readings give the mean time per verify between them."""
    calls = spent = 0.0
    with httpx.Client(timeout=2) as client:
        for record in registry.records(SERVICE):
            text = client.get(record["metrics_url"]).text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.labels.get("path") != VERIFY_PATH:
                        continue
                    if sample.name == "http_request_duration_seconds_count":
                        calls += sample.value
                    elif sample.name == "http_request_duration_seconds_sum":
                        spent += sample.value
    return calls, spent

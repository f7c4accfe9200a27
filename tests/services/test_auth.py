"""The auth service as a real process: its token endpoint (client credentials), its verify
endpoint (what Traefik's forwardAuth asks), its public key, its key folder and its faults."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import jwt
import pytest
from labstack.tokens import KEY_FILE, SECRET_FILE

from labkit import auth

from .support import Etcd, Service, wait_registered

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def service(etcd: Etcd, spawn, tmp_path: Path) -> Service:
    started = spawn("auth", LAB_PORT="18070", **auth.instance_environment(tmp_path))
    wait_registered(etcd, started)
    return started


def secret(tmp_path: Path) -> str:
    return (auth.state_folder(tmp_path) / SECRET_FILE).read_text()


def issue(service: Service, password: str, **form: str) -> httpx.Response:
    body = {"grant_type": "client_credentials", "scope": "echo:read", **form}
    return httpx.post(f"{service.url}/token", data=body, auth=("lab", password), timeout=2)


def verify(service: Service, token: str | None, scope: str = "echo:read") -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{service.url}/verify", params={"scope": scope}, headers=headers,
                     timeout=2)


def test_makes_its_key_and_secret_owner_only_at_first_start(service: Service,
                                                            tmp_path: Path) -> None:
    folder = auth.state_folder(tmp_path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in (KEY_FILE, SECRET_FILE):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name


def test_issues_a_token_to_the_lab_client_only(service: Service, tmp_path: Path) -> None:
    wrong = issue(service, "guess")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    anonymous = httpx.post(f"{service.url}/token", data={"grant_type": "client_credentials",
                                                          "scope": "echo:read"}, timeout=2)
    assert anonymous.status_code == 401

    answer = issue(service, secret(tmp_path), ttl="60", subject="ada")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 60, "echo:read")
    assert answer.headers["cache-control"] == "no-store"
    about = httpx.get(f"{service.url}/", timeout=2).json()
    assert about["scopes_supported"] == list(auth.scopes())
    keys = httpx.get(f"{service.url}{about['jwks_uri']}", timeout=2).json()["keys"]
    public = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(body["access_token"], public, algorithms=["EdDSA"], audience="lab")
    assert claims["sub"] == "ada" and claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize(("form", "error", "detail"), [
    ({"scope": "echo:admin"}, "invalid_scope", "unknown scope echo:admin; valid scopes:"),
    ({"scope": ""}, "invalid_scope", "unknown scope (none asked)"),
    ({"ttl": "soon"}, "invalid_request", "ttl must be a number of seconds, got 'soon'"),
    ({"ttl": "0"}, "invalid_request", "ttl must be from 1 to 86400 seconds"),
    ({"subject": "<script>"}, "invalid_request", "subject must be"),
    ({"grant_type": "password"}, "unsupported_grant_type", "client_credentials"),
])
def test_refuses_a_request_it_cannot_grant(service: Service, tmp_path: Path, form: dict,
                                           error: str, detail: str) -> None:
    answer = issue(service, secret(tmp_path), **form)
    assert answer.status_code == 400
    assert answer.json()["error"] == error and detail in answer.json()["error_description"]


def test_verify_answers_as_forward_auth_expects(service: Service, tmp_path: Path) -> None:
    token = issue(service, secret(tmp_path), scope="echo:read web:read", subject="ada")
    token = token.json()["access_token"]
    granted = verify(service, token)
    assert granted.status_code == 200
    assert granted.headers["x-auth-subject"] == "ada"
    assert granted.headers["x-auth-scopes"] == "echo:read web:read"

    missing = verify(service, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="lab"'
    assert "x-auth-subject" not in missing.headers
    invalid = verify(service, token[:-4] + "AAAA")
    assert invalid.status_code == 401
    assert 'error="invalid_token"' in invalid.headers["www-authenticate"]
    forbidden = verify(service, token, scope="echo:write")
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]
    assert 'scope="echo:write"' in forbidden.headers["www-authenticate"]
    # a gateway asking for a scope that does not exist is misconfigured: nobody gets in
    assert verify(service, token, scope="everything").status_code == 500


def test_a_second_instance_shares_the_key(etcd: Etcd, spawn, service: Service,
                                            tmp_path: Path) -> None:
    token = issue(service, secret(tmp_path)).json()["access_token"]
    second = spawn("auth", LAB_SLOT="2", LAB_PORT="18070", **auth.instance_environment(tmp_path))
    wait_registered(etcd, second)
    assert verify(second, token).status_code == 200


def test_injected_errors_and_latency_reach_the_verify_route(service: Service,
                                                            tmp_path: Path) -> None:
    token = issue(service, secret(tmp_path)).json()["access_token"]
    service.admin_put({"error_rate": 1.0}).raise_for_status()
    assert verify(service, token).status_code == 500
    service.admin_put({"error_rate": 0, "latency": {"ms": 300}}).raise_for_status()
    answer = verify(service, token)
    assert answer.status_code == 200 and answer.elapsed.total_seconds() >= 0.3

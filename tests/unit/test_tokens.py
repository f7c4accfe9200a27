"""Tokens (issue #15, item 2): the auth service's keys and its issue and verify rules, with a
fake clock; and labkit's side: scopes, token requests and the forwardAuth settings, refused
with a clear error before anything is sent."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import re
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from labstack import tokens as core
from labstack.tokens import MAX_TTL_S, RequestRefused, Signer, TokenRefused
from test_bad_input import lab_and_contacts, refused  # noqa: F401 - the fixture, and its check

from labkit import auth
from labkit.errors import LabError
from labkit.tokens import check_request, claims

SCOPES = ("echo:read", "echo:write", "web:read")
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> Signer:
    return Signer(Ed25519PrivateKey.generate(), SCOPES, clock)


def refusal(signer: Signer, token: str, scope: str = "echo:read") -> TokenRefused:
    with pytest.raises(TokenRefused) as refused:
        signer.verify(token, scope)
    return refused.value


def test_a_token_grants_its_scopes_to_its_subject_until_it_expires(signer, clock):
    token, lifetime = signer.issue(["echo:read", "web:read"], 60, "ada")
    assert lifetime == 60
    identity = signer.verify(token, "web:read")
    assert (identity.subject, identity.scopes) == ("ada", ("echo:read", "web:read"))
    header = jwt.get_unverified_header(token)
    assert header == {**header, "alg": "EdDSA", "kid": signer.jwk["kid"]}

    clock.now = NOW + 59.9
    assert signer.verify(token, "echo:read").subject == "ada"
    clock.now = NOW + 60  # exp is the first second it is no longer valid (RFC 7519)
    expired = refusal(signer, token)
    assert (expired.status, expired.error, str(expired)) == (401, "invalid_token",
                                                              "the token has expired")


def test_a_token_without_the_routes_scope_is_forbidden_not_unauthenticated(signer):
    token, _ = signer.issue(["web:read"], 60, "ada")
    refused = refusal(signer, token, "echo:read")
    assert (refused.status, refused.error) == (403, "insufficient_scope")
    assert str(refused) == "the token grants web:read; this route needs echo:read"


def test_a_token_signed_by_another_key_is_refused(signer, clock):
    impostor = Signer(Ed25519PrivateKey.generate(), SCOPES, clock)
    token, _ = impostor.issue(["echo:read"], 60, "mallory")
    refused = refusal(signer, token)
    assert (refused.status, refused.error) == (401, "invalid_token")
    assert "bad signature" in str(refused)


def test_a_token_changed_after_signing_is_refused(signer):
    token, _ = signer.issue(["web:read"], 60, "ada")
    head, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["scope"] = "echo:read"  # grant itself the scope
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    assert "bad signature" in str(refusal(signer, f"{head}.{forged}.{signature}"))


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a.b", "é.é.é", "x" * 5000])
def test_a_malformed_token_is_refused(signer, token):
    refused = refusal(signer, token)
    assert (refused.status, refused.error) == (401, "invalid_token")
    assert str(refused).startswith(("not a valid token", "bad signature"))


def test_an_unsigned_token_is_refused(signer):
    """alg "none": the classic JWT forgery; only EdDSA is accepted."""
    token = jwt.encode({"iss": core.ISSUER, "aud": core.AUDIENCE, "sub": "x", "scope":
                        "echo:read", "iat": int(NOW), "exp": int(NOW) + 60}, None,
                       algorithm="none")
    assert refusal(signer, token).status == 401


def test_a_token_for_another_issuer_or_audience_or_missing_a_claim_is_refused(signer):
    base = {"iss": core.ISSUER, "aud": core.AUDIENCE, "sub": "x", "scope": "echo:read",
            "iat": int(NOW), "exp": int(NOW) + 60}
    for change in ({"iss": "elsewhere"}, {"aud": "another-lab"}, {"exp": None},
                   {"scope": None}, {"exp": "tomorrow"}):
        claims_ = {k: v for k, v in {**base, **change}.items() if v is not None}
        token = jwt.encode(claims_, signer.key, algorithm="EdDSA")
        refused = refusal(signer, token)
        assert (refused.status, refused.error) == (401, "invalid_token"), change


@pytest.mark.parametrize(("scopes", "ttl", "subject", "message"), [
    (["echo:admin"], 60, "ada", "unknown scope echo:admin; valid scopes: echo:read echo:write"),
    ([], 60, "ada", "unknown scope (none asked)"),
    (["echo:read"], 0, "ada", f"ttl must be from 1 to {MAX_TTL_S} seconds"),
    (["echo:read"], MAX_TTL_S + 1, "ada", "ttl must be"),
    (["echo:read"], float("nan"), "ada", "ttl must be"),
    (["echo:read"], 60, "", "subject must be"),
    (["echo:read"], 60, "a b", "subject must be"),
])
def test_a_token_request_that_cannot_be_granted_is_refused(signer, scopes, ttl, subject,
                                                           message):
    with pytest.raises(RequestRefused, match=re.escape(message)):
        signer.issue(scopes, ttl, subject)


def test_the_key_is_made_once_owner_only_and_served_as_a_jwk(tmp_path: Path):
    folder = tmp_path / "auth"
    key = core.load_or_make_key(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / core.KEY_FILE).stat().st_mode) == 0o600
    again = core.load_or_make_key(folder)
    assert core.public_jwk(again.public_key()) == core.public_jwk(key.public_key())
    jwk = core.public_jwk(key.public_key())
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and len(jwk["kid"]) == 43
    secret = core.load_or_make_secret(folder)
    assert len(secret) >= 40 and core.load_or_make_secret(folder) == secret
    assert stat.S_IMODE((folder / core.SECRET_FILE).stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == [core.SECRET_FILE, core.KEY_FILE]


def test_a_key_others_can_read_is_refused(tmp_path: Path):
    core.load_or_make_key(tmp_path)
    os.chmod(tmp_path / core.KEY_FILE, 0o644)
    with pytest.raises(PermissionError, match="readable by others"):
        core.load_or_make_key(tmp_path)


def _kid(folder: str) -> str:
    return core.public_jwk(core.load_or_make_key(Path(folder)).public_key())["kid"]


def test_replicas_starting_at_once_agree_on_one_key(tmp_path: Path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        kids = pool.map(_kid, [str(tmp_path)] * 8)
    assert len(set(kids)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [core.KEY_FILE]  # no drafts left


# ---- labkit's side -------------------------------------------------------------------------


def test_scopes_are_read_and_write_of_each_service_but_auth():
    assert auth.scopes() == ("echo:read", "echo:write", "web:read", "web:write",
                             "routeguide:read", "routeguide:write")


@pytest.mark.parametrize(("args", "message"), [
    (("echo:admin", "5m", "ada"), "unknown scope 'echo:admin'; valid scopes: echo:read, "
                                  "echo:write, web:read, web:write, routeguide:read"),
    ((["echo:read", "auth:read"], "5m", "ada"), "unknown scope 'auth:read'"),
    (([], "5m", "ada"), "scopes must name at least one of echo:read"),
    ((7, "5m", "ada"), "scopes must be a list of scopes such as ['echo:read']"),
    ((["echo:read"], "0s", "ada"), "ttl must be greater than zero"),
    ((["echo:read"], "500ms", "ada"), "ttl must be at least 1s"),
    ((["echo:read"], "25h", "ada"), "ttl must be at most 86400s"),
    ((["echo:read"], "soon", "ada"), "ttl must be a number of seconds or a string"),
    ((["echo:read"], "5m", "a b"), "subject must be 1 to 64 letters"),
    ((["echo:read"], "5m", None), "subject must be"),
])
def test_a_bad_token_request_is_refused_by_labkit(args, message):
    with pytest.raises(LabError, match=re.escape(message)):
        check_request(*args)


def test_a_token_request_is_normalised():
    assert check_request("echo:read", 1.2, "ada") == (["echo:read"], 2, "ada")
    assert check_request(["web:read", "web:read"], "1m", "x") == (["web:read"], 60, "x")


def test_claims_shows_what_a_token_says_without_trusting_it(signer):
    token, _ = signer.issue(["echo:read"], 60, "ada")
    assert claims(token)["sub"] == "ada" and claims(token)["scope"] == "echo:read"
    with pytest.raises(LabError, match="not a JWT"):
        claims("nonsense")


def test_the_forward_auth_settings_ask_for_one_scope_and_pass_the_identity_on():
    settings = auth.forward_auth("echo:read", "http://127.0.0.1:8000")
    assert settings["address"] == "http://127.0.0.1:8000/verify?scope=echo:read"
    assert auth.scope_of(settings["address"]) == "echo:read"
    assert settings["authRequestHeaders/0"] == "Authorization"
    assert [settings["authResponseHeaders/0"], settings["authResponseHeaders/1"]] == [
        "X-Auth-Subject", "X-Auth-Scopes"]
    assert settings["trustForwardHeader"] == "false"
    with pytest.raises(LabError, match="unknown scope 'echo:admin'; valid scopes: echo:read"):
        auth.forward_auth("echo:admin", "http://127.0.0.1:8000")


@pytest.mark.parametrize(("call", "message"), [
    (lambda lab: lab.token(["echo:admin"]), "unknown scope 'echo:admin'; valid scopes"),
    (lambda lab: lab.token("echo:read", ttl=0), "ttl must be greater than zero"),
    (lambda lab: lab.token("echo:read", subject="a/b"), "subject must be"),
    (lambda lab: lab.policies.require("echo", "echo:admin"), "valid scopes: echo:read"),
    (lambda lab: lab.policies.require("echo", 1), "unknown scope 1"),
    (lambda lab: lab.policies.require("nope", "echo:read"), "unknown service 'nope'"),
    (lambda lab: lab.policies.require("auth", None), "auth cannot require a token"),
], ids=["scope", "ttl", "subject", "require scope", "require type", "service", "auth"])
def test_bad_input_is_refused_before_anything_is_sent(lab_and_contacts, call,  # noqa: F811
                                                      message):
    refused(lab_and_contacts, call, match=re.escape(message))

"""Getting tokens from the lab's auth service, as the lab's owner (`lab.token`).

    tokens = Tokens(state)
    token = tokens.issue(["echo:read"], ttl="5m")        # a signed JWT, as a string
    claims(token)                                        # what it says (not a check of it)

The token endpoint takes the client credentials of client "lab": a secret the auth service
made at its first start in the state folder, readable by its owner only. Every argument is
checked here first, so bad input is refused before anything is sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable
from pathlib import Path

import httpx
from labstack.tokens import CLIENT_ID, MAX_TTL_S, SECRET_FILE, SUBJECT

from . import auth, durations
from .errors import LabError
from .topology import infra
from .topology import service as known_service

TOKEN_PATH = "/token"


def check_request(scopes: object, ttl: object, subject: object) -> tuple[list[str], int, str]:
    """The scopes, the lifetime in whole seconds and the subject of a token request, or a
    LabError saying what is valid."""
    items = [scopes] if isinstance(scopes, str) else scopes
    if not isinstance(items, Iterable) or isinstance(items, bytes | dict):
        raise LabError(f"scopes must be a list of scopes such as ['echo:read'], got {scopes!r}")
    wanted = [auth.check_scope(scope) for scope in items]
    if not wanted:
        raise LabError(f"scopes must name at least one of {', '.join(auth.scopes())}")
    seconds = durations.seconds(ttl, "ttl", positive=True, maximum=MAX_TTL_S)
    if seconds < 1:
        raise LabError(f"ttl must be at least 1s (a token's expiry is in whole seconds), "
                       f"got {ttl!r}")
    if not isinstance(subject, str) or not SUBJECT.fullmatch(subject):
        raise LabError(f"subject must be 1 to 64 letters, digits or ._@-, got {subject!r}")
    return list(dict.fromkeys(wanted)), math.ceil(seconds), subject


def claims(token: str) -> dict:
    """The claims a token carries, read without checking its signature (to look at one: only
    the auth service decides whether it is valid)."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (AttributeError, IndexError, ValueError, binascii.Error):
        raise LabError(f"not a JWT (three base64url parts joined by dots): {token!r:.60}") from None


class Tokens:
    """A client of the auth service's token endpoint, through the gateway."""

    def __init__(self, state: Path, timeout: float = 2.0) -> None:
        self.secret_file = auth.state_folder(state) / SECRET_FILE
        self.http = httpx.Client(base_url=infra().gateway.url, timeout=timeout,
                                 headers={"Host": known_service(auth.SERVICE).host_rule})

    def close(self) -> None:
        self.http.close()

    def issue(self, scopes: Iterable[str] | str, ttl: float | str = "5m",
              subject: str = "learner") -> str:
        """A token for `subject` granting `scopes`, valid for `ttl`."""
        wanted, seconds, subject = check_request(scopes, ttl, subject)
        try:
            secret = self.secret_file.read_text().strip()
        except OSError as exc:
            raise LabError(f"no client secret to ask the auth service with ({exc}): it makes "
                           f"{self.secret_file} at its first start; is the lab up?") from None
        form = {"grant_type": "client_credentials", "scope": " ".join(wanted),
                "ttl": str(seconds), "subject": subject}
        try:
            response = self.http.post(TOKEN_PATH, data=form, auth=(CLIENT_ID, secret))
        except httpx.HTTPError as exc:
            raise LabError(f"the auth service did not answer through the gateway: {exc}") from None
        if response.status_code != 200:
            try:
                detail = response.json().get("error_description") or response.text
            except ValueError:
                detail = response.text
            raise LabError(f"the auth service refused a token (HTTP {response.status_code}): "
                           f"{detail}")
        return str(response.json()["access_token"])

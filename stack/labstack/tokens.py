"""Signed access tokens: the auth service's keys, and issuing and verifying JWTs with scopes.

A token is a JWT signed with the service's Ed25519 key (JWS algorithm EdDSA), naming its
subject (`sub`), its scopes (`scope`, space-separated as in OAuth 2.0) and its expiry (`exp`).
Verifying checks, in this order: a well-formed token, the signature (so a token signed by any
other key, or edited after signing, is refused), the issuer and audience, the expiry (no
leeway: issuer and gateway share one clock), then the scope a route requires.

The key is made at the service's first start, in its folder of the lab's state folder, owner
only (0600, in a 0700 folder): only the auth service reads it. Its public half is served as a
JWK set, so anyone may verify a token without being able to make one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import stat
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "EdDSA"
ISSUER = "lab-auth"
AUDIENCE = "lab"
KEY_FILE = "signing-key.pem"
SECRET_FILE = "client-secret"  # the lab owner's credential for the token endpoint
CLIENT_ID = "lab"  # ... and the one client it knows
MAX_TTL_S = 24 * 3600
SUBJECT = re.compile(r"[A-Za-z0-9._@-]{1,64}")
REQUIRED_CLAIMS = ["iss", "aud", "sub", "scope", "iat", "exp"]

Clock = Callable[[], float]


class TokenRefused(Exception):
    """The token does not grant access. `status` is the HTTP answer (401: not a valid token;
    403: valid, without the scope); `error` the RFC 6750 error code; the message says why."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error = status, error


class RequestRefused(ValueError):
    """A token request that cannot be granted; `error` is the OAuth 2.0 error code
    (invalid_scope: an unknown scope; invalid_request: a bad ttl or subject)."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error


@dataclass(frozen=True)
class Identity:
    """Who a valid token speaks for: its subject and scopes."""

    subject: str
    scopes: tuple[str, ...]


def _private_file(path: Path, data: bytes) -> bytes:
    """Create `path` holding `data`, readable by the owner only, unless another process made
    it first (then its content wins): written to a file of our own, then linked into place,
    which fails if the name exists, so two replicas starting at once agree on one key."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another replica's key came first
            os.link(draft, path)
    finally:
        draft.unlink()
    return read_private(path)


def read_private(path: Path) -> bytes:
    """The content of a secret file, refused if anyone but its owner may read it (as ssh
    refuses a private key that others can read)."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"{path} is readable by others (mode {stat.filemode(mode)}): "
                              f"chmod 600 it, or delete it to make a new one")
    return path.read_bytes()


def _folder(folder: Path) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask, and an existing one kept
    return folder


def load_or_make_key(folder: Path) -> Ed25519PrivateKey:
    """The signing key in `folder`, made there (owner only) if it has none yet."""
    path = _folder(folder) / KEY_FILE
    if path.exists():
        pem = read_private(path)
    else:
        fresh = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        pem = _private_file(path, fresh)
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds no Ed25519 private key: delete it to make a new one")
    return key


def load_or_make_secret(folder: Path) -> str:
    """The token endpoint's client secret in `folder`, made there (owner only) if need be."""
    path = _folder(folder) / SECRET_FILE
    if path.exists():
        return read_private(path).decode().strip()
    return _private_file(path, secrets.token_urlsafe(32).encode()).decode().strip()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The public key as a JWK (RFC 8037), its `kid` the RFC 7638 thumbprint."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    thumbprint = hashlib.sha256(json.dumps(jwk, separators=(",", ":"),
                                           sort_keys=True).encode()).digest()
    return {**jwk, "kid": _b64url(thumbprint), "alg": ALGORITHM, "use": "sig"}


class Signer:
    """Issues and verifies tokens with one key pair; `scopes` are those that exist."""

    def __init__(self, key: Ed25519PrivateKey, scopes: Iterable[str],
                 clock: Clock = time.time) -> None:
        self.key = key
        self.public = key.public_key()
        self.jwk = public_jwk(self.public)
        self.scopes = tuple(scopes)
        self.clock = clock

    def issue(self, scopes: Iterable[str], ttl_s: float, subject: str) -> tuple[str, int]:
        """A token for `subject` with `scopes`, valid for `ttl_s` seconds (rounded up to whole
        seconds, JWT's unit), and its lifetime in seconds."""
        wanted = list(dict.fromkeys(scopes))
        unknown = [s for s in wanted if s not in self.scopes]
        if not wanted or unknown:
            raise RequestRefused("invalid_scope", f"unknown scope "
                                 f"{', '.join(unknown) or '(none asked)'}; "
                                 f"valid scopes: {' '.join(self.scopes)}")
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise RequestRefused("invalid_request",
                                 f"ttl must be from 1 to {MAX_TTL_S} seconds, got {ttl_s}")
        if not SUBJECT.fullmatch(subject):
            raise RequestRefused("invalid_request", "subject must be 1 to 64 letters, digits "
                                 f"or ._@-, got {subject!r}")
        now = int(self.clock())
        lifetime = -int(-ttl_s // 1)
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "scope": " ".join(wanted),
                  "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, self.key, algorithm=ALGORITHM,
                           headers={"kid": self.jwk["kid"]})
        return token, lifetime

    def verify(self, token: str, scope: str) -> Identity:
        """Who `token` speaks for, if it is valid and grants `scope`; else TokenRefused."""
        try:
            claims = jwt.decode(
                token, self.public, algorithms=[ALGORITHM], issuer=ISSUER, audience=AUDIENCE,
                # the times are checked below, against this signer's clock
                options={"require": REQUIRED_CLAIMS, "verify_exp": False,
                         "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidSignatureError:
            raise TokenRefused(401, "invalid_token", "bad signature: not signed by this "
                               "lab's auth service, or changed after signing") from None
        except jwt.InvalidTokenError as exc:
            raise TokenRefused(401, "invalid_token", f"not a valid token: {exc}") from None
        expiry = claims["exp"]
        if isinstance(expiry, bool) or not isinstance(expiry, int | float):
            raise TokenRefused(401, "invalid_token", "not a valid token: exp is not a time")
        if self.clock() >= expiry:
            raise TokenRefused(401, "invalid_token", "the token has expired")
        granted = tuple(str(claims["scope"]).split())
        if scope not in granted:
            raise TokenRefused(403, "insufficient_scope",
                               f"the token grants {' '.join(granted)}; this route needs {scope}")
        return Identity(str(claims["sub"]), granted)

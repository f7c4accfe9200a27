"""The lab's admin token: made at every fresh `up` into the state folder (owner only), read
by each instance at its start (LAB_ADMIN_TOKEN_FILE) and sent by labkit with every call to
an admin API (stack/labstack/admin.py), which refuses a call without it (401) or with
another (403)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import LabError
from .privileges import User, hand_over

FILE = "admin-token"


def path(state: Path) -> Path:
    return state / FILE


def make(state: Path, user: User | None) -> None:
    """A new token, 0600, owned by the programs' user (they read it); written whole."""
    draft = state / f".{FILE}.{os.getpid()}"
    draft.unlink(missing_ok=True)
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(32))
    hand_over(draft, user)
    draft.replace(path(state))


def headers(state: Path) -> dict[str, str]:
    """What an admin call carries to prove it comes from the lab's owner."""
    try:
        token = path(state).read_text().strip()
    except FileNotFoundError:
        raise LabError(f"no admin token at {path(state)}: is the lab up? "
                       "('labkit up' makes it)") from None
    return {"Authorization": f"Bearer {token}"}

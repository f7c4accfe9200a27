"""Which address block this process's lab uses.

Lab *k* puts its infrastructure on 127.k.0.1 and instance N of service S on 127.k.S.N, so
several labs share a machine and each looks the same from inside. Block 0 is the classic
layout. The block comes, in this order, from: the block chosen for this process (`use`),
the LABKIT_BLOCK environment variable, the block the state folder records for its running
lab, else 0. Claiming a block so that no other lab takes it is `labkit.block_claims`.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import paths
from .errors import LabError

BLOCK_ENV = "LABKIT_BLOCK"
MAX_BLOCK = 254  # 127.255.x.x would hold the broadcast address 127.255.255.255
BLOCK_FILE = "block"  # in the state folder, while its lab runs

_chosen: int | None = None


def check_block(value: object, source: str = "a block") -> int:
    """A block number 0..MAX_BLOCK (an int, or its decimal text), or an error saying so."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isdecimal():
        text = int(text)
    if isinstance(text, bool) or not isinstance(text, int) or not 0 <= text <= MAX_BLOCK:
        raise LabError(f"{source} must be a whole number from 0 to {MAX_BLOCK} "
                       f"(lab k uses 127.k.0.0/16), got {value!r}")
    return text


def from_environment() -> int | None:
    value = os.environ.get(BLOCK_ENV)
    return None if value is None else check_block(value, BLOCK_ENV)


def recorded(state: Path) -> int | None:
    """The block the state folder's lab runs on (written at `up`, removed at `down`)."""
    try:
        return check_block((state / BLOCK_FILE).read_text(), f"{state / BLOCK_FILE}")
    except FileNotFoundError:
        return None


def record(state: Path, block: int) -> None:
    (state / BLOCK_FILE).write_text(f"{block}\n")


def forget(state: Path) -> None:
    (state / BLOCK_FILE).unlink(missing_ok=True)


def use(block: int) -> None:
    """Make `block` this process's block: every address labkit computes from now on."""
    global _chosen
    _chosen = check_block(block)


def current() -> int:
    if _chosen is not None:
        return _chosen
    explicit = from_environment()
    if explicit is not None:
        return explicit
    return recorded(paths.state_dir()) or 0

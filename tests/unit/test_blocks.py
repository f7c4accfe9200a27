"""Address blocks: validation, and claims that name their holder and die with it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import block_claims, blocks
from labkit.errors import LabError
from labkit.topology import infra

HOLD = """
import sys, time
from pathlib import Path
from labkit import block_claims
claim = block_claims.claim(int(sys.argv[1]), Path(sys.argv[2]))
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Claims in a folder of this test's own, so that no real lab is disturbed."""
    folder = tmp_path / "locks"
    monkeypatch.setenv(block_claims.LOCK_DIR_ENV, str(folder))
    return folder


def hold(block: int, state: Path) -> subprocess.Popen:
    """Another process (another lab's supervisor) holding `block`."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(block), str(state)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("bad", [-1, blocks.MAX_BLOCK + 1, "x", "1.5", 2.0, True, None])
def test_a_block_is_a_whole_number_in_range(bad: object) -> None:
    with pytest.raises(LabError, match=f"from 0 to {blocks.MAX_BLOCK}"):
        blocks.check_block(bad)
    assert blocks.check_block(" 12\n") == 12


def test_a_taken_block_is_refused_naming_its_holder_and_freed_when_the_holder_dies(
    tmp_path: Path,
) -> None:
    other = hold(33, tmp_path / "their-lab")
    try:
        with pytest.raises(LabError) as refused:
            block_claims.claim(33, tmp_path / "my-lab")
        message = str(refused.value)
        assert f"pid {other.pid}" in message and str(tmp_path / "their-lab") in message
        assert block_claims.first_free(excluding=range(33)) == 34
    finally:
        other.send_signal(signal.SIGKILL)  # a crash, not a clean release
        other.wait(timeout=10)
    assert block_claims.holder(33) is None  # no stale claim
    mine = block_claims.claim(33, tmp_path / "my-lab")
    mine.release()


def test_the_first_free_block_skips_claimed_and_excluded_blocks(tmp_path: Path) -> None:
    first = block_claims.first_free()
    mine = block_claims.claim(first, tmp_path / "lab")
    try:
        assert block_claims.first_free() > first
        assert block_claims.first_free(excluding={first, first + 1}) > first + 1
    finally:
        mine.release()
    assert block_claims.first_free() == first


def test_a_block_with_a_busy_address_is_not_claimed_and_its_lock_is_let_go(
    tmp_path: Path,
) -> None:
    block = block_claims.first_free()
    gateway = infra(block).gateway
    with socket.socket() as stranger:  # a process that is not a lab, on the block's gateway
        stranger.bind((gateway.host, gateway.port))
        stranger.listen()
        assert block_claims.try_claim_unused(block, tmp_path / "lab") is None
        assert block_claims.holder(block) is None
        taken = block_claims.claim_first_free(tmp_path / "lab")
        try:
            assert taken.block > block
        finally:
            taken.release()

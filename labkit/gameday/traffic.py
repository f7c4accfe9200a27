"""The users' traffic while a game day runs: each client sends load from its own address, in
short runs one after the other, until stopped (or for at most MAX_SECONDS)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pandas as pd

from ..waits import wait_for

URL = "http://echo.localhost/"
CHUNK_S = 2.0  # each run's length: how long stop() may wait for a client to notice
TIMEOUT_S = 1.0  # a user gives up on a request after this
MAX_SECONDS = 1800.0  # a forgotten game day stops sending after half an hour


class Traffic:
    def __init__(self, load: Callable[..., pd.DataFrame], clients: dict[str, float]):
        """`load` is lab.load; `clients` maps a source address to its requests per second."""
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(load, address, rps),
                                          name=f"gameday-client-{address}", daemon=True)
                         for address, rps in clients.items()]
        for thread in self._threads:
            thread.start()

    def _client(self, load: Callable[..., pd.DataFrame], address: str, rps: float) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        while not self._stop.is_set() and time.monotonic() < deadline:
            load(URL, rps=rps, seconds=CHUNK_S, source_address=address, timeout=TIMEOUT_S,
                 progress=False)

    def stop(self) -> None:
        """Stop every client and wait until each has finished its current run."""
        self._stop.set()
        wait_for(lambda: not any(t.is_alive() for t in self._threads),
                 what="the game day's clients to stop", timeout=CHUNK_S + TIMEOUT_S + 10,
                 interval=0.1)

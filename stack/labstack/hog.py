"""The memory-leak and CPU-burn faults, acted out by one background thread per instance.

A leak holds `leak_mb_per_s` more memory every second (written, so it is resident) up to
faults.MAX_LEAKED_MB, and frees it all when the fault ends: its own anonymous mappings, so
that freeing gives the memory back to the system (malloc might keep it); if an allocation
fails (an address-space limit), the instance exits as one out of memory would. A burn keeps a
thread busy for `cpu_burn` of every tick: with the GIL, that time is taken from the
requests too, as a CPU-hungry neighbour inside the process would. Idle, the thread waits
for a change.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import time

from .faults import MAX_LEAKED_MB, FaultState

log = logging.getLogger("labstack")

TICK_S = 0.1
MB = 1 << 20


class Hog:
    def __init__(self, faults: FaultState) -> None:
        self._faults = faults
        self._held: list[mmap.mmap] = []
        self._held_bytes = 0  # read by the admin API's thread
        self._changed = threading.Event()
        threading.Thread(target=self._run, name="fault-hog", daemon=True).start()

    @property
    def leaked_mb(self) -> float:
        return self._held_bytes / MB

    def wake(self) -> None:
        """The faults changed (FaultState's on_change)."""
        self._changed.set()

    def _run(self) -> None:
        while True:
            faults = self._faults.current()
            if not faults.leak_mb_per_s:
                self._free()
            if not faults.leak_mb_per_s and not faults.cpu_burn:
                self._changed.wait()
                self._changed.clear()
                continue
            began = time.monotonic()
            if faults.leak_mb_per_s and self.leaked_mb < MAX_LEAKED_MB:
                self._hold(int(faults.leak_mb_per_s * TICK_S * MB))
            while time.monotonic() < began + faults.cpu_burn * TICK_S:
                pass  # busy on purpose
            self._changed.wait(max(began + TICK_S - time.monotonic(), 0.0))
            self._changed.clear()

    def _hold(self, size: int) -> None:
        try:
            chunk = mmap.mmap(-1, max(size, mmap.PAGESIZE))
        except OSError as exc:  # an address-space limit (labkit.limits' rlimit fallback)
            # a leaking service whose allocations fail is broken: exit, as one out of memory
            # would, and let the supervisor restart it
            log.error("out of memory: exiting", extra={
                "leaked_mb": round(self.leaked_mb, 1), "error": exc.strerror})
            logging.shutdown()
            os._exit(1)
        for offset in range(0, size, mmap.PAGESIZE):
            chunk[offset] = 1  # touched: resident, as leaked objects are
        self._held.append(chunk)
        self._held_bytes += len(chunk)

    def _free(self) -> None:
        held, self._held, self._held_bytes = self._held, [], 0
        for chunk in held:
            chunk.close()

"""A control loop in the background (labkit.autoscale, labkit.ip_guard): its thread, the
decisions it records, and how it stops."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pandas as pd

Record = Callable[[dict], None]
TIME_COLUMNS = ("time", "until")  # unix seconds in the rows, datetimes in `decisions`


class ControlLoop:
    """Runs `body(stop, record)` on a daemon thread; every row it records is one decision,
    and `announce(row)` (when it returns a text) goes to `progress`."""

    def __init__(self, name: str, columns: list[str], interval_s: float,
                 body: Callable[[threading.Event, Record], None],
                 announce: Callable[[dict], str | None], progress: Callable[[str], None]):
        self._columns, self._interval_s = columns, interval_s
        self._rows: list[dict] = []
        self._stop = threading.Event()

        def record(row: dict) -> None:
            self._rows.append(row)
            message = announce(row)
            if message:
                progress(message)

        self._thread = threading.Thread(target=body, name=name, daemon=True,
                                        args=(self._stop, record))
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def decisions(self) -> pd.DataFrame:
        """One row per decision, times as datetimes."""
        frame = pd.DataFrame(list(self._rows), columns=self._columns)
        for column in set(TIME_COLUMNS) & set(self._columns):
            frame[column] = pd.to_datetime(frame[column], unit="s")
        return frame

    def stop(self) -> pd.DataFrame:
        """End the loop (within one interval) and return its decisions."""
        self._stop.set()
        self._thread.join(timeout=self._interval_s + 30)
        return self.decisions

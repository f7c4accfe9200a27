"""Jobs that run in the background, each on its own thread, all at once, up to a limit.

A pool with fewer workers than jobs would queue the extra ones silently: a load meant to
run while an instance is killed would start after the kill. Here every accepted job starts
at once, and one past the limit is refused, saying how many run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from .errors import LabError

T = TypeVar("T")


class BackgroundJobs:
    def __init__(self, limit: int, what: str):
        self.limit = limit
        self.what = what  # e.g. "background loads", for the refusal
        self._lock = threading.Lock()
        self._futures: list[Future] = []

    def running(self) -> int:
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()]
            return len(self._futures)

    def submit(self, job: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Start `job` on a thread of its own now; its Future has the result or the error."""
        future: Future[T] = Future()
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()]
            if len(self._futures) >= self.limit:
                raise LabError(
                    f"{len(self._futures)} {self.what} are running, the most at once is "
                    f"{self.limit}; call .result() on one to wait for it before starting another"
                )
            self._futures.append(future)
        future.set_running_or_notify_cancel()

        def run() -> None:
            try:
                future.set_result(job(*args, **kwargs))
            except BaseException as error:  # the caller sees it from .result()
                future.set_exception(error)

        threading.Thread(target=run, name="labkit-background", daemon=True).start()
        return future

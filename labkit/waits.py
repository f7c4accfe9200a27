"""Bounded waits that explain themselves when they time out.

Modelled on testcontainers' wait strategies: every wait has a deadline and a
poll interval, and its timeout error says what it waited for, what the
component looked like at the end, and the likely cause.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .errors import LabError, LabTimeout

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T],
    *,
    what: str,
    timeout: float,
    interval: float = 0.05,
    diagnose: Callable[[], str] | None = None,
    hint: str = "",
) -> T:
    """Call `probe` until it returns something truthy (a non-empty DataFrame counts);
    return that value.

    Exceptions raised by `probe` count as "not yet" (a port not open yet is
    normal during start-up); the last one is reported if time runs out. A
    LabError is final (e.g. the process crashed) and propagates at once.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
            if _done(result):
                return result
        except LabError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    lines = [f"timed out after {timeout:g} s waiting for {what}"]
    if last_error is not None:
        lines.append(f"last error: {type(last_error).__name__}: {last_error}")
    if diagnose is not None:
        try:
            lines.append(diagnose())
        except Exception as exc:  # noqa: BLE001 - diagnosis must not hide the timeout
            lines.append(f"(could not collect diagnostics: {exc})")
    if hint:
        lines.append(f"Hint: {hint}")
    raise LabTimeout("\n".join(lines))


def _done(result: object) -> bool:
    empty = getattr(result, "empty", None)  # a DataFrame has no truth value, only .empty
    return not empty if isinstance(empty, bool) else bool(result)

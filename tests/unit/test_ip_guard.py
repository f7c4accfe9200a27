"""The guard's loop on a simulated clock and access log: who is banned, when, and for how long."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from labkit import ip_guard
from labkit.errors import LabError

RULE = ip_guard.Rule(max_rps=10, window_s=2, ban_s=5, interval_s=1)
HOST = "echo.localhost"


def access(rates: dict[str, float], until: float) -> pd.DataFrame:
    """Requests to echo from each client at its rate, from t=0 to `until`."""
    rows = [{"time": pd.Timestamp(i / rps, unit="s"), "client": client, "host": HOST}
            for client, rps in rates.items() for i in range(int(until * rps))]
    return pd.DataFrame(rows, columns=["time", "client", "host"])


def scenario(rates: dict[str, float], seconds: int) -> tuple[list[dict], list[dict]]:
    """Run the guard for `seconds` of simulated time; its decisions and deny calls."""
    now = [0.5]
    stop = threading.Event()
    rows: list[dict] = []
    denied: list[dict] = []

    def sleep(s: float) -> None:
        now[0] += s
        if now[0] >= seconds:
            stop.set()

    log = access(rates, seconds)
    ip_guard.run(RULE, HOST, lambda since: log[log["time"] < pd.Timestamp(now[0], unit="s")],
                 lambda bans: denied.append(dict(bans)), stop, rows.append,
                 clock=lambda: now[0], sleep=sleep)
    return rows, denied


def test_a_flooding_client_is_banned_for_the_ban_then_again_while_it_floods() -> None:
    rows, denied = scenario({"127.0.0.66": 50, "127.0.0.21": 2}, seconds=14)
    actions = [(round(r["time"], 1), r["client"], r["action"]) for r in rows]
    # first check with a full window over the threshold (20 requests in 2 s): t=1.5 holds 75
    assert actions[:3] == [(0.5, "127.0.0.66", "ban"), (5.5, "127.0.0.66", "lift"),
                           (6.5, "127.0.0.66", "ban")]
    assert all(client != "127.0.0.21" for _, client, _ in actions), "the polite client stays"
    assert denied[0] == {"127.0.0.66": 5.5} and denied[-1] == {}, denied


def test_requests_from_before_a_ban_ended_do_not_ban_again() -> None:
    rows, _ = scenario({"127.0.0.66": 50}, seconds=3)   # floods until t=3, then nothing
    log = access({"127.0.0.66": 50}, 3)
    assert ip_guard.offenders(log, HOST, {"127.0.0.66": 3.0}, 4.0, RULE) == {}
    assert ip_guard.offenders(log, HOST, {}, 4.0, RULE) == {"127.0.0.66": 50}
    assert [r["action"] for r in rows] == ["ban"]


@pytest.mark.parametrize(("args", "message"), [
    ((0, "5s", "30s", "1s"), "max_rps must be"),
    (("10", "5s", "30s", "1s"), "max_rps must be"),
    ((10, "0s", "30s", "1s"), "window must be greater than zero"),
    ((10, "5s", -1, "1s"), "ban must be a finite"),
    ((10, "5s", "30s", "10ms"), "interval must be at least 0.2 s"),
])
def test_bad_rules_are_refused(args: tuple, message: str) -> None:
    with pytest.raises(LabError, match=message):
        ip_guard.check_rule(*args)

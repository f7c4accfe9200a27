"""Notebook 19's exercises: autoscaling."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from ...autoscale import DECISION_COLUMNS
from ...errors import LabError
from ..exercises import Exercise, Findings, number
from .measure import close_to

if TYPE_CHECKING:
    from ...lab import Lab

BUDGET_REPLICAS = 3
LOW_TARGET_RPS = 5


def decision_log(decisions: object) -> pd.DataFrame:
    """The learner's decision log, or an error saying where it comes from."""
    if not isinstance(decisions, pd.DataFrame) or not set(DECISION_COLUMNS) <= set(decisions):
        raise LabError("decisions is the autoscaler's decision log: the DataFrame that "
                       "scaler.stop() returns (the notebook's bursty_run gives it)")
    return decisions


def replica_budget(lab: Lab) -> float | None:
    """The most instances the lab's budget allows a service, None without a budget."""
    value = lab.budget().set_index("resource").loc["replicas per service", "allowed"]
    return None if pd.isna(value) else float(value)


def allowed(lab: Lab) -> str:
    """What the budget allows, in words ("the budget allows 5 replicas")."""
    budget = replica_budget(lab)
    return "no budget caps the replicas" if budget is None else \
        f"the budget allows {budget:g} replicas"


def capped_by_budget(lab: Lab, decisions: object) -> Findings:
    log = decision_log(decisions)
    found = Findings()
    found.require(replica_budget(lab) == BUDGET_REPLICAS,
                  f"{allowed(lab)} per service: "
                  f"lab.budget(max_replicas={BUDGET_REPLICAS}) before the run")
    if not found.require(not log.empty, "the decision log is empty: run the autoscaler "
                                        "under the notebook's bursts, then scaler.stop()"):
        return found
    refused = log[log["action"] == "refused"]
    peak = log["rate_rps"].max()
    most = log["replicas"].max()
    found.seen.append(f"{len(log)} decisions, {len(refused)} refused; at most {most} "
                      f"instances for a peak of {peak:.0f} rps ({peak / most:.0f} rps each)")
    if not refused.empty:
        found.seen.append(f"first refusal: {refused['reason'].iloc[0]}")
    found.require(not refused.empty and refused["reason"].str.contains("budget").any(),
                  "no decision was refused by the budget: the peak must ask for more than "
                  f"{BUDGET_REPLICAS} instances (the notebook's bursts do, at target 10)")
    found.require(most <= BUDGET_REPLICAS,
                  f"echo ran {most} instances: the budget was not in force during the run")
    return found


def needed_at_peak(lab: Lab, decisions: object, needed: object) -> Findings:
    said = number(needed, "needed", 1, 100, f"how many echo instances the peak needs at "
                  f"{LOW_TARGET_RPS} rps each")
    log = decision_log(decisions)
    found = Findings()
    target = log.attrs.get("target_rps")
    ran = (f"its target was {target:g} rps per instance" if target
           else "it does not say its target: pass the DataFrame scaler.stop() returned")
    if not found.require(target == LOW_TARGET_RPS,
                         f"the decision log is not from a run at target {LOW_TARGET_RPS} "
                         f"({ran}): run the autoscaler with "
                         f"target_rps_per_instance={LOW_TARGET_RPS}"):
        return found
    if not found.require(log["rate_rps"].notna().any(),
                         "the loop read no rate: run it under the notebook's bursts, then "
                         "scaler.stop()"):
        return found
    peak, ceiling = log["rate_rps"].max(), log.attrs["max"]
    wanted = math.ceil(peak / LOW_TARGET_RPS)
    most = log["replicas"].max()
    found.seen.append(f"the loop read a peak of {peak:.0f} rps and recommended at most "
                      f"{log['recommended'].max():.0f} (its max is {ceiling}; "
                      f"{allowed(lab)}); echo ran at most {most} instances, "
                      f"{peak / most:.0f} rps each at the peak")
    if not found.require(wanted > ceiling,
                         f"a peak of {peak:.0f} rps needs no more than the loop's max "
                         f"({ceiling}) at {LOW_TARGET_RPS} rps each: run it under the "
                         "notebook's bursts (45 rps)"):
        return found
    found.require(close_to(said, wanted, 1),
                  f"you said {said:g} instances: divide the peak rate the loop read by the "
                  "target, and round up")
    return found


EXERCISES = (
    Exercise(
        "19.1", f"a budget of {BUDGET_REPLICAS} replicas: what does the decision log say at "
                "the peak?",
        "The loop still recommends what the rate needs (5 at the peak), and each scale "
        "beyond the budget is logged as refused, with the budget's reason: the platform's "
        "ceiling wins over the loop. A refused step is not trimmed to fit: echo stays where "
        "it was (2 or 3 instances, as the rate rose), and each instance carries 15 to 22 "
        "rps of the peak's 45, well over its target. Capacity planning is where "
        "the budget must be argued, not in the loop.",
        capped_by_budget, ("decisions",)),
    Exercise(
        "19.2", f"target {LOW_TARGET_RPS}: how many instances does the peak need, and what "
                "does the budget do?",
        "The peak is 45 rps (5 quiet + 40 burst): at 5 rps each it needs 9 instances. The loop "
        "recommends its max, 5, and the budget allows 5, so echo runs 5 instances at 9 rps "
        "each: the target is a wish, and max and the budget decide what it costs.",
        needed_at_peak, ("decisions", "needed")),
    Exercise(
        "19.3", "a lull longer than the window: is scaling down flapping, or right?",
        "Right: once the lull outlasts the window, the loop has seen a whole window of low "
        "traffic and removes instances, as it should for a real drop. The window is a "
        "trade-off between reacting to a true drop and riding out a pause; pick it from how "
        "long your quiet moments last, and from what an instance costs to start again."),
)

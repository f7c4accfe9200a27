"""Notebook 19's exercises: autoscaling."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ...autoscale import DECISION_COLUMNS
from ...errors import LabError
from ..exercises import Exercise, Findings

if TYPE_CHECKING:
    from ...lab import Lab

BUDGET_REPLICAS = 3


def capped_by_budget(lab: Lab, decisions: object) -> Findings:
    if not isinstance(decisions, pd.DataFrame) or not set(DECISION_COLUMNS) <= set(decisions):
        raise LabError("decisions is the autoscaler's decision log: the DataFrame that "
                       "scaler.stop() returns (the notebook's bursty_run gives it)")
    found = Findings()
    budget = lab.budget().set_index("resource").loc["replicas per service", "allowed"]
    found.require(budget == BUDGET_REPLICAS,
                  f"the budget allows {budget} replicas per service: "
                  f"lab.budget(max_replicas={BUDGET_REPLICAS}) before the run")
    if not found.require(not decisions.empty, "the decision log is empty: run the autoscaler "
                                              "under the notebook's bursts, then scaler.stop()"):
        return found
    refused = decisions[decisions["action"] == "refused"]
    peak = decisions["rate_rps"].max()
    most = decisions["replicas"].max()
    found.seen.append(f"{len(decisions)} decisions, {len(refused)} refused; at most {most} "
                      f"instances for a peak of {peak:.0f} rps ({peak / most:.0f} rps each)")
    if not refused.empty:
        found.seen.append(f"first refusal: {refused['reason'].iloc[0]}")
    found.require(not refused.empty and refused["reason"].str.contains("budget").any(),
                  "no decision was refused by the budget: the peak must ask for more than "
                  f"{BUDGET_REPLICAS} instances (the notebook's bursts do, at target 10)")
    found.require(most <= BUDGET_REPLICAS,
                  f"echo ran {most} instances: the budget was not in force during the run")
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
        "19.2", "target 5: how many instances does the peak need, and what does the budget do?",
        "The peak is 45 rps (5 quiet + 40 burst): at 5 rps each it needs 9 instances. The loop "
        "recommends its max, 5, and the budget allows 5, so echo runs 5 instances at 9 rps "
        "each: the target is a wish, and max and the budget decide what it costs."),
    Exercise(
        "19.3", "a lull longer than the window: is scaling down flapping, or right?",
        "Right: once the lull outlasts the window, the loop has seen a whole window of low "
        "traffic and removes instances, as it should for a real drop. The window is a "
        "trade-off between reacting to a true drop and riding out a pause; pick it from how "
        "long your quiet moments last, and from what an instance costs to start again."),
)

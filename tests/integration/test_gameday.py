"""Every game-day incident, played against the live lab by the scripted investigator: each is
found from telemetry alone, and end() leaves the lab as it was."""

import time

import pytest

from labkit.errors import LabError
from labkit.gameday.incidents import CAUSES, SERVICE, choose
from labkit.gameday.investigator import investigate

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]

SEEDS = {cause: next(s for s in range(100) if choose(s).truth.cause == cause)
         for cause in CAUSES}
INVESTIGATION_S = 40  # measured 2.7 to 15.3 s from the start over 3 runs (6 incidents each)


def as_before(lab):
    """What end() must restore: no fault, echo's replicas and versions, its split."""
    return (lab.faults().to_dict("records"), len(lab.instances(SERVICE)),
            lab.versions(SERVICE).to_dict("records"))


@pytest.mark.parametrize("cause", CAUSES)
def test_the_investigator_finds_each_incident_from_telemetry(lab, cause, capsys):
    lab.heal()
    before = as_before(lab)
    game = lab.gameday
    briefing = game.start(seed=SEEDS[cause])
    try:
        symptom = briefing.splitlines()[0]  # the next line lists every cause
        assert cause not in symptom, f"the briefing gives the cause away: {symptom}"
        began = time.monotonic()
        found = investigate(lab, game.service, since=game.started_at, timeout=INVESTIGATION_S)
        took = time.monotonic() - began
        with pytest.raises(LabError, match="valid causes"):
            game.answer(service=found.service, instance=found.instance, cause="gremlins")
        verdict = game.answer(service=found.service, instance=found.instance, cause=found.cause)
        assert verdict.solved and verdict.attempts == 1, (
            f"the investigator answered {found} for {cause}: {verdict}")
        debrief = game.debrief()
        assert f"instance={found.instance!r}" in debrief and "attempt" in debrief
    finally:
        game.end()
    assert as_before(lab) == before, "end() should leave the lab as it was"
    with capsys.disabled():  # the spread behind INVESTIGATION_S
        print(f"\n{cause}: found in {took:.1f} s")

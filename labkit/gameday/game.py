"""`lab.gameday`: start a hidden incident, take answers, debrief, and put the lab back."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from ..errors import LabError
from . import answers, incidents
from .inject import inject
from .traffic import Traffic

if TYPE_CHECKING:
    from ..lab import Lab

REGULAR_RPS = 6.0  # each regular user
NOISY_RPS = 60.0  # the noisy client: ten users' worth


def clients(incident: incidents.Incident) -> dict[str, float]:
    """Who sends traffic during the incident: the regular users, and the noisy client if
    that is the incident."""
    users = dict.fromkeys(incidents.REGULAR_CLIENTS, REGULAR_RPS)
    if incident.truth.cause == "noisy_client":
        users[incident.truth.instance] = NOISY_RPS
    return users


class GameDay:
    def __init__(self, lab: Lab):
        self._lab = lab
        self._incident: incidents.Incident | None = None
        self._traffic: Traffic | None = None
        self._verdicts: list[answers.Verdict] = []
        self._replicas_before = 0
        self.started_at: float | None = None  # when the incident began (unix seconds)

    @property
    def service(self) -> str:
        """The service the users complain about (the briefing says so too)."""
        return self._running().truth.service

    def start(self, seed: int | None = None) -> str:
        """Heal the lab, then inject one incident chosen from `seed` (None: a random seed,
        printed so that the game can be replayed), start the users' traffic and print the
        briefing. Returns the briefing."""
        if self._incident is not None:
            raise LabError(f"a game day is running (seed {self._incident.seed}): "
                           "lab.gameday.end() it first")
        seed = random.randrange(incidents.MAX_SEED + 1) if seed is None else seed
        incident = incidents.choose(incidents.check_seed(seed))
        lab = self._lab
        self._replicas_before = len(lab.instances(incidents.SERVICE))
        lab.heal()
        lab.scale(incidents.SERVICE, len(incidents.SLOTS))
        self._incident, self._verdicts = incident, []
        self.started_at = time.time()
        self._traffic = Traffic(lab.load, clients(incident))
        try:
            inject(lab, incident)
        except BaseException:
            self.end()  # half an incident is no game: undo it, then say why
            raise
        briefing = (f"Game day (seed {seed}). {incident.briefing}\n"
                    f"Find the service, the instance (or version, or client address) and the "
                    f"cause ({', '.join(incidents.CAUSES)}), then "
                    f"lab.gameday.answer(service=..., instance=..., cause=...).")
        print(briefing)
        return briefing

    def answer(self, service: str, instance: str, cause: str) -> answers.Verdict:
        """Check an answer; prints and returns the verdict. An answer naming an unknown
        service, instance or cause is refused (a LabError) and does not count."""
        incident = self._running()
        given = answers.check_answer(service, instance, cause)
        self._verdicts.append(answers.verdict(incident.truth, given, len(self._verdicts) + 1))
        print(self._verdicts[-1])
        return self._verdicts[-1]

    @property
    def attempts(self) -> int:
        return len(self._verdicts)

    def debrief(self) -> str:
        """What happened, which telemetry showed it, how the hunt went; printed and
        returned."""
        text = answers.debrief(self._running(), self._verdicts)
        print(text)
        return text

    def end(self) -> None:
        """Stop the users' traffic and undo the incident: heal (faults, versions, splits,
        limits, health checks) and echo back at the replicas it ran before the start."""
        if self._incident is None:
            print("no game day is running")
            return
        if self._traffic is not None:
            self._traffic.stop()
        self._lab.heal()
        self._lab.scale(incidents.SERVICE, self._replicas_before)
        self._incident = self._traffic = self.started_at = None
        print("game day over: the lab is as it was before")

    def _running(self) -> incidents.Incident:
        if self._incident is None:
            raise LabError("no game day is running: start one with lab.gameday.start(seed)")
        return self._incident

"""Game day: a hidden incident in the running lab, to find from its telemetry alone.

    lab.gameday.start(seed=7)     # one incident, chosen from the seed, injected; a briefing
    lab.gameday.answer(service="echo", instance="echo-2", cause="slow_instance")
    lab.gameday.debrief()         # what happened, and which telemetry showed it
    lab.gameday.end()             # the lab as it was before

The pieces: `incidents` (the catalogue and the seeded choice: pure), `answers` (the cause
vocabulary, checking an answer, the verdict and the debrief: pure), `traffic` (the users'
background load), `inject` (breaking the lab, with labkit's own fault APIs), `game` (the
`lab.gameday` object) and `investigator` (a scripted investigator that reads only what a
learner can: metrics, logs, status, the registry).
"""

"""The game day's pure parts: the seeded choice, checking answers, the verdict, the debrief,
and the scripted investigator's decision on made-up evidence."""

from collections import Counter

import pytest

from labkit.errors import LabError
from labkit.gameday import answers, incidents
from labkit.gameday.game import NOISY_RPS, REGULAR_RPS, clients
from labkit.gameday.incidents import CAUSES, Truth, choose
from labkit.gameday.investigator import Evidence, diagnose


def test_a_seed_always_gives_the_same_incident():
    assert [choose(s) for s in range(50)] == [choose(s) for s in range(50)]


def test_seeds_cover_every_incident_and_every_culprit_instance():
    chosen = [choose(s) for s in range(100)]
    assert set(Counter(i.truth.cause for i in chosen)) == set(CAUSES)
    assert len(CAUSES) >= 5
    slow = {i.truth.instance for i in chosen if i.truth.cause == "slow_instance"}
    assert slow == {"echo-1", "echo-2", "echo-3"}


def test_each_truth_names_what_its_cause_is_about():
    for incident in map(choose, range(100)):
        truth = incident.truth
        assert answers.check_answer(truth.service, truth.instance, truth.cause) == truth
        if truth.cause == "bad_release":
            assert truth.instance == "v2"
        elif truth.cause == "noisy_client":
            assert truth.instance.startswith("127.0.0.")
            assert truth.instance not in incidents.REGULAR_CLIENTS
        else:
            assert truth.instance == f"echo-{incident.slot}"


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "7", True])
def test_a_bad_seed_says_what_a_seed_is(seed):
    with pytest.raises(LabError, match="seed must be a whole number from 0 to 4294967295"):
        choose(seed)


@pytest.mark.parametrize(("answer", "names"), [
    (("mail", "echo-1", "slow_instance"), "valid services: auth, echo, routeguide, web"),
    (("echo", "echo-11", "slow_instance"), "echo-1 to echo-10.*v1, v2, v3.*127.0.0.0/8"),
    (("echo", "10.0.0.1", "slow_instance"), "echo-1 to echo-10"),
    (("echo", "web-1", "slow_instance"), "echo-1 to echo-10"),
    (("echo", "echo-1", "gremlins"), "valid causes: slow_instance, failing_instance, "
                                     "bad_release, hung_instance, noisy_client, memory_leak"),
])
def test_an_unknown_answer_names_the_valid_ones(answer, names):
    with pytest.raises(LabError, match=names):
        answers.check_answer(*answer)


def test_the_verdict_says_which_parts_are_right():
    truth = Truth("echo", "echo-2", "slow_instance")
    wrong = answers.verdict(truth, Truth("echo", "echo-3", "slow_instance"), attempts=1)
    assert not wrong.solved and wrong.right == ("service", "cause")
    assert str(wrong).startswith("Not yet (attempt 1): 2 of 3 right (service, cause)")
    right = answers.verdict(truth, truth, attempts=2)
    assert right.solved and str(right).startswith("Solved in 2 attempts")


def test_the_debrief_tells_what_happened_and_what_showed_it():
    incident = next(i for i in map(choose, range(100)) if i.truth.cause == "slow_instance")
    text = answers.debrief(incident, [])
    assert f"{incident.truth.instance} answered every request 250 ms late" in text
    assert "instance:lab_request_duration_seconds:p95_rate10s" in text
    assert text.endswith("No answer was given.")
    solved = answers.verdict(incident.truth, incident.truth, 1)
    assert answers.debrief(incident, [solved]).endswith("You found it in 1 attempt(s).")


def test_only_the_noisy_incident_has_a_noisy_client():
    for incident in map(choose, range(40)):
        sent = clients(incident)
        noisy = {a for a, rps in sent.items() if rps == NOISY_RPS}
        assert set(sent) - noisy == set(incidents.REGULAR_CLIENTS)
        assert all(sent[a] == REGULAR_RPS for a in incidents.REGULAR_CLIENTS)
        expected = {incident.truth.instance} if incident.truth.cause == "noisy_client" else set()
        assert noisy == expected


CALM = Evidence(service="echo",
                instance_error_ratio={"echo-1": 0.0, "echo-2": 0.0, "echo-3": 0.0},
                version_error_ratio={"v1": 0.0},
                instance_p95_s={"echo-1": 0.004, "echo-2": 0.005, "echo-3": 0.004},
                memory_range_mb={"echo-1": 1.0, "echo-2": 0.5, "echo-3": 2.0},
                noisy_clients=[], unregistered_running=[])


def calm(**change):
    return Evidence(**{**vars(CALM), **change})


@pytest.mark.parametrize(("evidence", "expected"), [
    (CALM, None),
    (calm(instance_p95_s={"echo-1": 0.004, "echo-2": 0.26, "echo-3": 0.004}),
     ("echo-2", "slow_instance")),
    (calm(instance_p95_s={"echo-1": 0.09, "echo-2": 0.08, "echo-3": 0.07}), None),
    (calm(instance_error_ratio={"echo-1": 0.0, "echo-2": 0.0, "echo-3": 0.3}),
     ("echo-3", "failing_instance")),
    (calm(instance_error_ratio={"echo-1": 0.0, "echo-2": 0.0, "echo-3": 0.0,
                                "echo-4": 0.5, "echo-5": 0.45},
          version_error_ratio={"v1": 0.0, "v2": 0.48}), ("v2", "bad_release")),
    (calm(unregistered_running=["echo-1"]), ("echo-1", "hung_instance")),
    (calm(noisy_clients=["127.0.0.66"]), ("127.0.0.66", "noisy_client")),
    (calm(memory_range_mb={"echo-1": 1.0, "echo-2": 70.0, "echo-3": 2.0},
          unregistered_running=["echo-2"]), ("echo-2", "memory_leak")),
    (calm(memory_range_mb={"echo-1": 1.0, "echo-2": 20.0, "echo-3": 2.0}), None),
])
def test_the_investigator_decides_from_the_evidence(evidence, expected):
    found = diagnose(evidence)
    assert (found if found is None else (found.instance, found.cause)) == expected

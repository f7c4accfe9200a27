"""Issue #11: every bad argument to the learner's API is a LabError naming what is valid, raised
before anything reaches the stack, so the stack is left as it was. No stack runs here: the Lab's
backend is a fake that records every call, and HTTP, etcd and load sending are recorded too."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from etcd3gw.client import Etcd3Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit import load as load_module
from labkit.errors import LabError
from labkit.faults import MAX_SLOW_START_S
from labkit.lab import Lab
from labkit.limits import MIN_MEMORY_MB, Limits
from labkit.load import MAX_RPS
from labkit.metrics import MAX_QUERY_CHARS
from labkit.shifting import PRESETS
from labkit.telemetry import MAX_FILTER_CHARS
from labkit.topology import MAX_REPLICAS, SERVICES
from labkit.traefik_limits import DURATION_RANGE, MAX_DURATION_S, MAX_INT, MIN_DURATION_S

RUNNING = [1, 2, 3]  # the fake's running instances of every service
READS = {"is_up", "active_slots", "instance_pid", "desired_replicas", "is_paused", "processes",
         "limits"}


class RecordingBackend:
    """A Backend whose stack is up with instances 1-3 of every service. Reads answer; every
    other call (all of them change the stack) is recorded and does nothing."""

    name = "fake"

    def __init__(self, state: Path) -> None:
        self.state = state
        self.calls: list[str] = []

    def is_up(self) -> bool:
        return True

    def active_slots(self, service: object) -> list[int]:
        return list(RUNNING)

    def instance_pid(self, service: object, slot: int) -> int:
        return 1000 + slot

    def limits(self, service: object) -> Limits:
        return Limits()

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("__") or name in READS:
            raise AttributeError(name)

        def record(*_args: object, **_kwargs: object) -> None:
            self.calls.append(name)

        return record


class Contacts:
    """Everything that would reach the stack: backend changes, HTTP, etcd, load."""

    def __init__(self, backend: RecordingBackend) -> None:
        self.backend = backend
        self.other: list[str] = []

    def clear(self) -> None:
        self.backend.calls.clear()
        self.other.clear()

    def all(self) -> list[str]:
        return [*self.backend.calls, *self.other]


@pytest.fixture
def lab_and_contacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        tuple[Lab, Contacts]]:
    backend = RecordingBackend(tmp_path)
    contacts = Contacts(backend)

    def http(_client: httpx.Client, request: httpx.Request, **_kw: object) -> httpx.Response:
        contacts.other.append(f"HTTP {request.method} {str(request.url)[:80]}")
        raise httpx.ConnectError("no stack in unit tests", request=request)

    def etcd(_client: object, *args: object, **_kw: object) -> None:
        contacts.other.append(f"etcd {args[:1]}")
        raise AssertionError("etcd contacted")

    def send_load(*_args: object, **_kw: object) -> None:
        contacts.other.append("load sent")

    monkeypatch.setattr(httpx.Client, "send", http)
    monkeypatch.setattr(Etcd3Client, "post", etcd)
    monkeypatch.setattr(load_module, "_run_in_thread", send_load)
    lab = Lab(backend=backend, progress=lambda _msg: None)  # type: ignore[arg-type]
    contacts.clear()
    yield lab, contacts
    lab.close()


def refused(lab_and_contacts: tuple[Lab, Contacts], call: Callable[[Lab], object],
            match: str | None = None) -> str:
    """Run `call`; it must raise a LabError (matching `match`) having contacted nothing."""
    lab, contacts = lab_and_contacts
    contacts.clear()
    with pytest.raises(LabError, match=match) as error:
        call(lab)
    assert contacts.all() == [], f"{error.value} -- but first: {contacts.all()}"
    return str(error.value)


# ---- the cases the probe found ---------------------------------------------------------

INSTANCE_CALLS: dict[str, Callable[[Lab, object], object]] = {
    "kill": lambda lab, n: lab.kill("echo", n),  # type: ignore[arg-type]
    "pause": lambda lab, n: lab.pause("echo", n),  # type: ignore[arg-type]
    "resume": lambda lab, n: lab.resume("echo", n),  # type: ignore[arg-type]
    "stop": lambda lab, n: lab.stop("echo", n),  # type: ignore[arg-type]
    "fault": lambda lab, n: lab.fault("echo", n, error_rate=0.5),  # type: ignore[arg-type]
    "slow_start": lambda lab, n: lab.slow_start("echo", n, 1),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("call", INSTANCE_CALLS)
@pytest.mark.parametrize("instance", [1.0, True, 0, -1, MAX_REPLICAS + 1, "1", None])
def test_an_instance_number_is_a_whole_number_in_range(lab_and_contacts, call, instance):
    message = refused(lab_and_contacts, lambda lab: INSTANCE_CALLS[call](lab, instance))
    assert f"whole numbers from 1 to {MAX_REPLICAS}" in message


@pytest.mark.parametrize("faults", [
    {"latency": math.nan}, {"latency": math.inf}, {"latency": "1s", "jitter": math.inf},
    {"error_rate": math.nan}, {"error_rate": math.inf}, {"error_rate": -math.inf},
    {"leak_mb_per_s": math.nan}, {"leak_mb_per_s": math.inf}, {"cpu_burn": math.nan},
])
def test_behaviour_faults_refuse_nan_and_infinity(lab_and_contacts, faults):
    refused(lab_and_contacts, lambda lab: lab.fault("echo", 1, **faults),
            match="finite|between 0 and 1")


@pytest.mark.parametrize(("change", "message"), [
    ({"memory": "lots"}, "memory must be a size such as '96M' or '1G', or a number of MiB, "
                         f"from {MIN_MEMORY_MB} MiB"),
    ({"memory": "32M"}, "what an instance needs to start"),
    ({"memory": 10**9}, "to this machine's"),
    ({"memory": math.nan}, "memory must be"),
    ({"memory": True}, "memory must be"),
    ({"cpu": 0}, "cpu must be a number of cores from 0.01"),
    ({"cpu": 999}, "to this machine's"),
    ({"cpu": "half"}, "cpu must be"),
    ({"cpu": math.inf}, "cpu must be"),
    ({"memroy": "96M"}, "unknown limit 'memroy'; valid: memory, cpu"),
])
def test_limits_refuse_what_cannot_be_enforced_naming_the_valid_range(lab_and_contacts, change,
                                                                      message):
    refused(lab_and_contacts, lambda lab: lab.limits("echo", **change), match=re.escape(message))


@pytest.mark.parametrize(("change", "message"), [
    ({"memory": "lots"}, "the memory budget must be a size such as '96M'"),
    ({"cpu": -1}, "the CPU budget must be a number of cores from 0.01 to 1000"),
    ({"cpu": math.nan}, "the CPU budget must be"),
    ({"max_replicas": 0}, f"max_replicas must be a whole number from 1 to {MAX_REPLICAS}"),
    ({"max_replicas": 2.5}, "max_replicas must be a whole number"),
    ({"max_replicas": True}, "max_replicas must be a whole number"),
    ({"memroy": "1G"}, "unknown budget 'memroy'; valid: memory, cpu, max_replicas"),
])
def test_a_budget_refuses_what_it_cannot_count_naming_the_valid_range(lab_and_contacts, change,
                                                                      message):
    refused(lab_and_contacts, lambda lab: lab.budget(**change), match=re.escape(message))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "ehco", "min": 1, "max": 2, "target_rps_per_instance": 5}, "known services"),
    ({"name": "echo", "min": 3, "max": 2, "target_rps_per_instance": 5}, "must not exceed max"),
    ({"name": "echo", "min": 1, "max": 2, "target_rps_per_instance": -5}, "above 0"),
    ({"name": "echo", "min": 1, "max": 2, "target_rps_per_instance": 5, "interval": "1ms"},
     "interval must be at least"),
])
def test_autoscaling_refuses_a_bad_policy_before_it_starts(lab_and_contacts, kwargs, message):
    refused(lab_and_contacts, lambda lab: lab.autoscale(**kwargs), match=message)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "ehco", "max_rps": 10}, "known services"),
    ({"name": "echo", "max_rps": 0}, "max_rps must be"),
    ({"name": "echo", "max_rps": 10, "window": "forever"}, "window must be"),
    ({"name": "echo", "max_rps": 10, "ban": 0}, "ban must be greater than zero"),
])
def test_a_guard_refuses_a_bad_rule_before_it_starts(lab_and_contacts, kwargs, message):
    refused(lab_and_contacts, lambda lab: lab.guard(**kwargs), match=message)


def test_limits_need_a_known_service(lab_and_contacts):
    refused(lab_and_contacts, lambda lab: lab.limits("ehco", memory="96M"),
            match="known services: auth, echo, routeguide, web")
    refused(lab_and_contacts, lambda lab: lab.limits(memory="96M"), match="name the service")


@pytest.mark.parametrize("seconds", [math.nan, math.inf, 1e9, MAX_SLOW_START_S + 1, -1, True])
def test_a_slow_start_is_finite_and_at_most_five_minutes(lab_and_contacts, seconds):
    refused(lab_and_contacts, lambda lab: lab.slow_start("echo", 1, seconds),
            match="slow start must be")
    assert not (lab_and_contacts[0].backend.state / "faults").exists()


@pytest.mark.parametrize("bound", [[1], {}, math.nan, math.inf, True, "soon", b"5m"])
@pytest.mark.parametrize("where", ["start", "end"])
def test_metrics_time_bounds_are_typed(lab_and_contacts, bound, where):
    refused(lab_and_contacts, lambda lab: lab.metrics("up", **{where: bound}),
            match="unix seconds, a datetime, or a duration ago")


def test_a_huge_promql_query_is_refused_with_its_limit(lab_and_contacts):
    refused(lab_and_contacts, lambda lab: lab.metrics("up" * MAX_QUERY_CHARS),
            match=f"1 to {MAX_QUERY_CHARS} characters")


@pytest.mark.parametrize("name", ["contains", "request_id", "instance", "trace_id"])
@pytest.mark.parametrize("value", ["x" * 100_000, "", 42, ["a"]])
def test_log_filters_are_strings_with_a_length_limit(lab_and_contacts, name, value):
    refused(lab_and_contacts, lambda lab: lab.logs(**{name: value}),
            match=f"{name} must be a string of 1 to {MAX_FILTER_CHARS} characters")


@pytest.mark.parametrize("limit", [True, 2.0, 0, -5, 10**9, "10", None])
def test_limits_are_whole_numbers_in_range(lab_and_contacts, limit):
    refused(lab_and_contacts, lambda lab: lab.traces(limit=limit), match="from 1 to 1000")
    refused(lab_and_contacts, lambda lab: lab.logs(limit=limit), match="from 1 to 100000")


@pytest.mark.parametrize("url", [123, None, b"http://echo.localhost/", ["http://x/"]])
def test_a_load_target_is_a_url_string(lab_and_contacts, url):
    refused(lab_and_contacts, lambda lab: lab.load(url, rps=1), match="'http://echo.localhost/'")
    refused(lab_and_contacts, lambda lab: lab.start_load(url, rps=1),
            match="'http://echo.localhost/'")


@pytest.mark.parametrize("options", [{"rps": 5, "sconds": 2}, {"rps": math.nan},
                                     {"concurrency": 2, "seconds": math.inf}, {}])
def test_load_options_are_checked_before_anything_is_sent(lab_and_contacts, options):
    refused(lab_and_contacts, lambda lab: lab.load(ECHO, **options))
    refused(lab_and_contacts, lambda lab: lab.start_load(ECHO, **options))
    assert lab_and_contacts[0]._loads.running() == 0


@pytest.mark.parametrize("weights", [{"v1": -1}, {"v1": math.nan}, {"v9": 10}, {"v1": 0},
                                     {}, "most", 7, {"v1": 1.5}])
def test_shift_weights_are_checked_before_the_deployment_lock(lab_and_contacts, weights):
    refused(lab_and_contacts, lambda lab: lab.shift("echo", weights))


@pytest.mark.parametrize(("preset", "to"), [("half", None), ("half", "v9"), ("full", 2)])
def test_a_preset_needs_a_known_version_before_the_deployment_lock(lab_and_contacts, preset, to):
    refused(lab_and_contacts, lambda lab: lab.shift("echo", preset, to=to), match="v1, v2|to=")


@pytest.mark.parametrize(("to", "percent"), [("v9", 10), ("v2", 0), ("v2", 101), ("v2", 5.5)])
def test_mirroring_is_checked_before_the_deployment_lock(lab_and_contacts, to, percent):
    refused(lab_and_contacts, lambda lab: lab.mirror("echo", to, percent))


@pytest.mark.parametrize("value", [1e10, "3000000h", "9999999999999s", 1e-7, "0.5ns"])
def test_durations_are_checked_against_traefiks_range_before_writing(lab_and_contacts, value):
    refused(lab_and_contacts, lambda lab: lab.policies.timeout("echo", response_header=value),
            match=f"response_header must be {DURATION_RANGE}")
    refused(lab_and_contacts, lambda lab: lab.policies.retry("echo", initial_interval=value),
            match=f"initial_interval must be {DURATION_RANGE}")


@pytest.mark.parametrize("weight", [MAX_INT + 1, 10**30, 1e19])
def test_weights_are_checked_against_traefiks_range_before_writing(lab_and_contacts, weight):
    refused(lab_and_contacts, lambda lab: lab.shift("echo", {"v1": 1, "v2": weight}),
            match=f"whole number from 0 to {MAX_INT}")


# ---- the property: whatever is wrong, a LabError and nothing changed -------------------

_GO_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=8),
    st.binary(max_size=4), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
NOT_A_SERVICE = ANYTHING.filter(lambda v: not (isinstance(v, str) and v in SERVICES))
NOT_RUNNING = ANYTHING.filter(lambda v: not (type(v) is int and v in RUNNING))
NOT_REPLICAS = ANYTHING.filter(lambda v: not (type(v) is int and 0 <= v <= MAX_REPLICAS))
NOT_DURATION = ANYTHING.filter(lambda v: v is not None and not (
    (type(v) in (int, float) and math.isfinite(v) and v >= 0)
    or (isinstance(v, str) and _GO_DURATION.fullmatch(v.strip()))))
BEYOND_TRAEFIK = st.one_of(  # well-formed durations that Traefik cannot hold
    st.floats(MAX_DURATION_S, 1e300, exclude_min=True),
    st.floats(0, MIN_DURATION_S, exclude_min=True, exclude_max=True),
    st.integers(int(MAX_DURATION_S // 3600) + 1, 10**15).map(lambda h: f"{h}h"),
)
NOT_A_RATE = ANYTHING.filter(lambda v: not (type(v) in (int, float) and 0 <= v <= 1))
NOT_A_TIME = ANYTHING.filter(lambda v: v is not None and not (
    (type(v) in (int, float) and math.isfinite(v))
    or (isinstance(v, str) and _GO_DURATION.fullmatch(v.strip()))))
NOT_A_FILTER = st.one_of(ANYTHING.filter(lambda v: v is not None and not isinstance(v, str)),
                         st.just(""), st.integers(MAX_FILTER_CHARS + 1, 70_000).map("x".__mul__))
NOT_A_LIMIT = ANYTHING.filter(lambda v: not (type(v) is int and 1 <= v <= 1000))
NOT_A_URL = st.one_of(ANYTHING.filter(lambda v: not isinstance(v, str)),
                      st.text(max_size=20).filter(lambda v: "://" not in v))
NOT_AN_RPS = ANYTHING.filter(lambda v: not (type(v) in (int, float) and 0 < v <= MAX_RPS))
NOT_WEIGHTS = st.one_of(
    ANYTHING.filter(lambda v: not isinstance(v, dict | str)),
    st.text(max_size=6).filter(lambda v: v != "off" and v not in PRESETS),
    st.dictionaries(st.sampled_from(["v1", "v2", "v9"]), NOT_RUNNING, min_size=1, max_size=2)
    .filter(lambda d: "v9" in d or not all(
        type(w) in (int, float) and math.isfinite(w) and w >= 0 and w == int(w) and w > 0
        for w in d.values())),
)
ECHO = "http://echo.localhost/"
LOAD_OPTIONS = set(inspect.signature(load_module.run_load).parameters)

Call = Callable[[Lab], Any]
BAD_CALLS: st.SearchStrategy[Call] = st.one_of(
    NOT_A_SERVICE.map(lambda v: lambda lab: lab.scale(v, 1)),
    NOT_REPLICAS.map(lambda v: lambda lab: lab.scale("echo", v)),
    st.tuples(st.sampled_from(sorted(INSTANCE_CALLS)), NOT_RUNNING).map(
        lambda c: lambda lab: INSTANCE_CALLS[c[0]](lab, c[1])),
    NOT_A_SERVICE.map(lambda v: lambda lab: lab.kill(v, 1)),
    NOT_A_SERVICE.map(lambda v: lambda lab: lab.limits(v, memory="96M")),
    NOT_DURATION.map(lambda v: lambda lab: lab.fault("web", 1, latency=v)),
    NOT_DURATION.map(lambda v: lambda lab: lab.fault("web", 1, latency="1ms", jitter=v)),
    NOT_A_RATE.map(lambda v: lambda lab: lab.fault("web", 1, error_rate=v)),
    NOT_A_RATE.map(lambda v: lambda lab: lab.fault("web", 1, cpu_burn=v)),
    st.one_of(NOT_A_RATE.filter(lambda v: not isinstance(v, int | float) or v < 0),
              st.floats(100, exclude_min=True)).map(
        lambda v: lambda lab: lab.fault("web", 1, leak_mb_per_s=v)),
    ANYTHING.filter(lambda v: not isinstance(v, bool)).map(
        lambda v: lambda lab: lab.fault("web", 1, unready=v)),
    st.one_of(NOT_DURATION, st.floats(MAX_SLOW_START_S, exclude_min=True)).map(
        lambda v: lambda lab: lab.slow_start("routeguide", 2, v)),
    NOT_A_TIME.map(lambda v: lambda lab: lab.metrics("up", start=v)),
    NOT_A_TIME.map(lambda v: lambda lab: lab.metrics("up", end=v)),
    NOT_DURATION.map(lambda v: lambda lab: lab.metrics("up", start="5m", step=v)),
    NOT_A_TIME.map(lambda v: lambda lab: lab.traces(since=v)),
    NOT_DURATION.map(lambda v: lambda lab: lab.traces(min_duration=v)),
    NOT_A_LIMIT.map(lambda v: lambda lab: lab.traces(limit=v)),
    NOT_A_FILTER.map(lambda v: lambda lab: lab.logs(contains=v)),
    NOT_A_FILTER.map(lambda v: lambda lab: lab.logs(request_id=v)),
    NOT_A_TIME.map(lambda v: lambda lab: lab.logs(until=v)),
    NOT_A_URL.map(lambda v: lambda lab: lab.load(v, rps=5)),
    NOT_A_URL.map(lambda v: lambda lab: lab.start_load(v, rps=5)),
    NOT_AN_RPS.map(lambda v: lambda lab: lab.load(ECHO, rps=v)),
    NOT_AN_RPS.map(lambda v: lambda lab: lab.start_load(ECHO, rps=v)),
    NOT_DURATION.map(lambda v: lambda lab: lab.start_load(ECHO, concurrency=2, seconds=v)),
    st.text(min_size=1, max_size=8).filter(lambda v: v.isidentifier() and v not in LOAD_OPTIONS)
    .map(lambda v: lambda lab: lab.load(ECHO, rps=5, **{v: 1})),
    NOT_WEIGHTS.map(lambda v: lambda lab: lab.shift("echo", v)),
    st.tuples(st.sampled_from(sorted(PRESETS)), ANYTHING.filter(
        lambda v: not (isinstance(v, str) and v in ("v1", "v2", "v3")))).map(
        lambda p: lambda lab: lab.shift("echo", p[0], to=p[1])),
    ANYTHING.filter(lambda v: not (type(v) is int and 1 <= v <= 100)).map(
        lambda v: lambda lab: lab.mirror("echo", "v2", v)),
    NOT_DURATION.map(lambda v: lambda lab: lab.policies.timeout("echo", response_header=v)),
    NOT_DURATION.map(lambda v: lambda lab: lab.policies.retry("echo", initial_interval=v)),
    BEYOND_TRAEFIK.map(lambda v: lambda lab: lab.policies.timeout("echo", response_header=v)),
    BEYOND_TRAEFIK.map(lambda v: lambda lab: lab.policies.circuit_breaker(
        "echo", "NetworkErrorRatio() > 0.5", check_period=v)),
    st.integers(MAX_INT + 1, 10**30).map(lambda v: lambda lab: lab.shift("echo", {"v1": v})),
    ANYTHING.filter(lambda v: not (type(v) is int and v >= 1)).map(
        lambda v: lambda lab: lab.policies.retry("echo", attempts=v)),
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=BAD_CALLS)
def test_any_bad_argument_is_a_lab_error_and_changes_nothing(lab_and_contacts, call):
    refused(lab_and_contacts, call)


@pytest.mark.parametrize(("change", "message"), [
    ({"sample": -0.1}, "sample (the share of requests traced) must be a number between 0 and 1"),
    ({"sample": 1.5}, "between 0 and 1, e.g. 0.1 for 10%, got 1.5"),
    ({"sample": "10%"}, "must be a number between 0 and 1"),
    ({"sample": math.nan}, "must be a number between 0 and 1"),
    ({"sample": True}, "must be a number between 0 and 1"),
    ({"log_level": "loud"}, "log_level must be one of debug, info, warning, error, got 'loud'"),
    ({"log_level": 20}, "log_level must be one of"),
    ({"keep_slower_than": "soon"}, "keep_slower_than must be a number of seconds or a string"),
    ({"keep_slower_than": -1}, "keep_slower_than must be a finite, non-negative duration"),
    ({"keep_slower_than": "2m"}, "keep_slower_than must be at most 60s"),
    ({"sample": 0.5, "log_level": "loud"}, "log_level must be one of"),  # nothing half-done
])
def test_telemetry_settings_refuse_a_bad_value_before_changing_anything(lab_and_contacts,
                                                                        change, message):
    lab, _contacts = lab_and_contacts
    before = lab.telemetry()
    refused(lab_and_contacts, lambda lab: lab.telemetry(**change), match=re.escape(message))
    assert lab.telemetry() == before

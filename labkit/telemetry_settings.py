"""The lab's telemetry settings: how much traffic is traced, what is kept anyway, how much is
logged. One setting for the whole lab, applied end to end (see Lab.telemetry):

- `sample`: the share of requests traced. The decision is made once, where a request enters
  the lab (the load generator's `traceparent`, else the gateway's sampler), and every hop
  after follows it: a trace is complete or absent, never partial.
- `keep_slower_than`: an untraced request that fails (5xx) or takes longer than this is
  recorded anyway by the services it reached (tail-style keeping of what matters).
- `log_level`: the services' log level; successful requests write no record (their span has
  everything), failures and warnings do.

Stored in the lab's state folder as the LAB_* variables the services read when they start
(LAB_TELEMETRY_FILE), so that instances started later run the same settings.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from . import durations
from .admin_api import AdminApi
from .backends.base import Backend, Progress
from .errors import LabError
from .topology import SERVICES

LOG_LEVELS = ("debug", "info", "warning", "error")
FILE_NAME = "telemetry-settings.json"
MAX_KEEP_SLOWER_S = 60.0


@dataclass(frozen=True)
class TelemetrySettings:
    # 10%: enough traces to read (a 10 s run at 50 rps leaves ~50), a tenth of the cost
    sample: float = 0.1
    keep_slower_than_ms: float = 1000.0
    log_level: str = "info"

    def changed(self, sample: object = None, keep_slower_than: object = None,
                log_level: object = None) -> TelemetrySettings:
        """These settings with the given ones changed, each validated (LabError naming what
        is valid); None leaves a setting as it is."""
        new = self
        if sample is not None:
            new = replace(new, sample=check_sample(sample))
        if keep_slower_than is not None:
            new = replace(new, keep_slower_than_ms=durations.milliseconds(
                keep_slower_than, "keep_slower_than", maximum=MAX_KEEP_SLOWER_S))
        if log_level is not None:
            new = replace(new, log_level=check_log_level(log_level))
        return new

    def environment(self) -> dict[str, str]:
        """The LAB_* variables a service reads (labstack.settings)."""
        return {
            "LAB_TRACE_SAMPLE": repr(self.sample),
            "LAB_TRACE_KEEP_SLOWER_MS": repr(self.keep_slower_than_ms),
            "LAB_LOG_LEVEL": self.log_level,
        }

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.sample:.0%} of requests traced; failures and requests slower than "
                f"{durations.go(self.keep_slower_than_ms / 1000)} kept anyway; "
                f"log level {self.log_level}")


def check_sample(value: object) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not 0 <= value <= 1):
        raise LabError(f"sample (the share of requests traced) must be a number between 0 and "
                       f"1, e.g. 0.1 for 10%, got {value!r}")
    return float(value)


def check_log_level(value: object) -> str:
    if not isinstance(value, str) or value.strip().lower() not in LOG_LEVELS:
        raise LabError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value.strip().lower()


def settings_file(state: Path) -> Path:
    return state / FILE_NAME


def load(state: Path) -> TelemetrySettings:
    """The settings in force in the lab of `state`: its file, else the defaults."""
    path = settings_file(state)
    try:
        variables = json.loads(path.read_text())
    except FileNotFoundError:
        return TelemetrySettings()
    except (OSError, ValueError) as exc:
        raise LabError(f"{path} is unreadable ({exc}); remove it to use the defaults") from None
    return TelemetrySettings(
        sample=float(variables["LAB_TRACE_SAMPLE"]),
        # a file written before keep_slower_than existed: its default
        keep_slower_than_ms=float(variables.get("LAB_TRACE_KEEP_SLOWER_MS",
                                                TelemetrySettings.keep_slower_than_ms)),
        log_level=variables["LAB_LOG_LEVEL"],
    )


def save(state: Path, settings: TelemetrySettings) -> None:
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings_file(state).write_text(json.dumps(settings.environment()))


def apply(backend: Backend, admin: AdminApi, wanted: TelemetrySettings,
          progress: Progress) -> None:
    """Put `wanted` in force everywhere: the file instances read when they start, the
    gateway's sampler for untraced callers (a restart without a gap), and every running
    instance live (its admin API), each answer checked."""
    before = load(backend.state)
    save(backend.state, wanted)
    if wanted.sample != before.sample:
        backend.reload_gateway(progress)
    for svc in SERVICES.values():
        for slot in backend.active_slots(svc):
            answer = admin.call(svc, slot, "PUT", "telemetry", wanted.as_dict())
            if TelemetrySettings(**answer) != wanted:
                raise LabError(f"{svc.name}-{slot} runs {answer} after being asked for "
                               f"{wanted.as_dict()}")
    progress(f"telemetry: {wanted.describe()}")


def in_force(admin: AdminApi, backend: Backend) -> dict[str, dict[str, float]]:
    """Each running instance's trace sample and keep_slower_than_ms, read back from it (NaN
    if it does not answer, none if it is paused), and the gateway's sample, from its
    configuration file: the rate it started with. Nothing while the lab is down or
    unsupervised."""
    if not backend.is_up():
        return {}
    found = {"traefik": {"sample": _traefik_sample(backend.state)}}
    for svc in SERVICES.values():
        for slot in backend.active_slots(svc):
            if backend.is_paused(svc, slot):
                continue
            try:
                answer = admin.call(svc, slot, "GET", "telemetry")
                found[svc.instance_id(slot)] = {
                    "sample": answer["sample"],
                    "keep_slower_than_ms": answer["keep_slower_than_ms"]}
            except LabError:
                found[svc.instance_id(slot)] = {"sample": math.nan,
                                                "keep_slower_than_ms": math.nan}
    return found


def _traefik_sample(state: Path) -> float:
    try:
        static = yaml.safe_load((state / "traefik.yml").read_text())
        return float(static["tracing"]["sampleRate"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return math.nan

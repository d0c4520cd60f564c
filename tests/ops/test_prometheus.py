"""Prometheus config and alert rules pass promtool; the alert unit tests pass; every alert is
documented in README.md (Operations) where its runbook annotation points."""

from __future__ import annotations

import re

import yaml
from promql_names import ALERT_RULES
from toolchain import REPO, run

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
OPERATIONS = REPO / "README.md"


def test_promtool_check_config(promtool: str) -> None:
    result = run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_promtool_check_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(ALERT_RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_alert_unit_tests(promtool: str) -> None:
    tests = PROMETHEUS_DIR / "alerts.test.yml"
    result = run([promtool, "test", "rules", str(tests)], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        t["alertname"] for case in yaml.safe_load(tests.read_text())["tests"] for t in case["alert_rule_test"]
    }
    assert len(tested) >= 2, tested


def test_promtool_unit_tests_can_fail(promtool: str, tmp_path) -> None:
    """A wrong expectation makes `promtool test rules` fail, so its success means something."""
    (tmp_path / "alerts.yml").write_text(ALERT_RULES.read_text())
    (tmp_path / "wrong.test.yml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["alerts.yml"],
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [{"series": 'up{component="routing"}', "values": "1x10"}],
                        "alert_rule_test": [
                            {
                                "eval_time": "5m",
                                "alertname": "LabelloopServiceDown",
                                "exp_alerts": [{"exp_labels": {"component": "routing"}}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    result = run([promtool, "test", "rules", "wrong.test.yml"], cwd=tmp_path)
    assert result.returncode != 0


def test_every_alert_has_severity_summary_and_a_documented_runbook() -> None:
    rules = [r for g in yaml.safe_load(ALERT_RULES.read_text())["groups"] for r in g["rules"]]
    alerts = [r for r in rules if "alert" in r]
    assert {"LabelloopServiceDown", "LabelloopConsumerLagGrowing", "LabelloopHumanQueueOverSLA",
            "LabelloopAuditedPrecisionBelowTarget", "LabelloopRetrainingFailing",
            "LabelloopDeadLetters"} <= {a["alert"] for a in alerts}  # fmt: skip
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert["alert"]
        runbook = alert["annotations"]["runbook"]
        assert runbook == f"README.md#{alert['alert'].lower()}", alert["alert"]
        assert runbook.split("#")[1] in headings, f"no section for {alert['alert']} in {OPERATIONS.name}"

"""The alert rules: valid for promtool, unit-tested alert by alert, documented in the runbook, and the
same rules in the Kubernetes PrometheusRule."""

from __future__ import annotations

import re
import runpy

import yaml
from deploy_tools import DEPLOY, REPO, Tools, run

RULES = DEPLOY / "prometheus" / "rules" / "streamcdp.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "streamcdp.rules.test.yml"


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules_and_the_configs(tools: Tools) -> None:
    result = run([tools.promtool(), "check", "rules", RULES])
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout
    for config in (DEPLOY / "prometheus" / "prometheus.yml", DEPLOY / "compose" / "prometheus.yml"):
        run([tools.promtool(), "check", "config", "--syntax-only", config])


def test_promtool_unit_tests_pass(tools: Tools) -> None:
    result = run([tools.promtool(), "test", "rules", RULE_TESTS])
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in alerts():
        name = alert["alert"]
        outcomes = [bool(case["exp_alerts"]) for case in cases if case["alertname"] == name]
        assert True in outcomes, f"{name}: no unit test where it fires"
        assert False in outcomes, f"{name}: no unit test where it stays quiet"


def test_every_alert_has_a_runbook_entry() -> None:
    runbook = (REPO / "docs" / "operations.md").read_text()
    headings = {heading.strip().lower() for heading in re.findall(r"^#+ (.+)$", runbook, flags=re.MULTILINE)}
    for alert in alerts():
        name = alert["alert"]
        assert alert["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"
        assert name.lower() in headings, f"docs/operations.md has no section '{name}'"
        assert alert["labels"]["severity"] in {"page", "ticket"}


def test_kubernetes_prometheusrule_is_generated_from_the_rules_file() -> None:
    generator = runpy.run_path(str(DEPLOY / "prometheus" / "prometheusrule.py"))
    assert generator["OUTPUT"].read_text() == generator["render"](), "run deploy/prometheus/prometheusrule.py"
    resource = yaml.safe_load(generator["OUTPUT"].read_text())
    assert resource["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]

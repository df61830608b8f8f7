"""promtool, from the golden image, on the project's rules: they load, and their tests pass."""

from __future__ import annotations

import subprocess

import pytest

from lgcloud.paths import PROJECT_ROOT

pytestmark = pytest.mark.engine


def promtool(*args: str, workdir: str = "/monitoring") -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{PROJECT_ROOT / 'monitoring'}:/monitoring:ro",
            "-w",
            workdir,
            "--entrypoint",
            "promtool",
            "lgcloud/vm:latest",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


RULES = sorted(p.name for p in (PROJECT_ROOT / "monitoring" / "rules").glob("*.yml"))
RULE_TESTS = sorted(p.name for p in (PROJECT_ROOT / "monitoring" / "tests").glob("*_test.yml"))


@pytest.mark.parametrize("rules", RULES)
def test_rules_load(rules):
    result = promtool("check", "rules", f"rules/{rules}")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("tests", RULE_TESTS)
def test_rule_tests_pass_with_a_positive_and_a_negative_case_per_alert(tests):
    result = promtool("test", "rules", tests, workdir="/monitoring/tests")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_every_alert_has_a_runbook_and_a_test():
    import yaml

    runbooks = (PROJECT_ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8").lower()
    tested = "".join((PROJECT_ROOT / "monitoring" / "tests" / t).read_text(encoding="utf-8") for t in RULE_TESTS)
    for name in RULES:
        for group in yaml.safe_load((PROJECT_ROOT / "monitoring" / "rules" / name).read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alert = rule["alert"]
                    assert f"## {alert.lower()}" in runbooks, f"{alert} ({name}) has no runbook in docs/runbooks.md"
                    assert f"alertname: {alert}" in tested, f"{alert} ({name}) has no promtool test"

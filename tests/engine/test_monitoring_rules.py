"""promtool, from the golden image, on the project's rules: they load, and their tests pass."""

from __future__ import annotations

import subprocess

import pytest

from lgcloud.config import PROJECT_ROOT

pytestmark = pytest.mark.engine


def promtool(*args: str, workdir: str = "/monitoring") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-v", f"{PROJECT_ROOT / 'monitoring'}:/monitoring:ro",
         "-w", workdir, "--entrypoint", "promtool", "lgcloud/vm:latest", *args],
        capture_output=True, text=True, timeout=120)


def test_rules_load():
    result = promtool("check", "rules", "rules/lab.yml")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_rule_tests_pass_with_a_positive_and_a_negative_case_per_alert():
    result = promtool("test", "rules", "lab_test.yml", workdir="/monitoring/tests")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr

"""The project is lint clean: its Python (ruff lint and format, mypy with every function typed) and
its Ansible content (yamllint, ansible-lint at the production profile)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lgcloud.paths import PROJECT_ROOT

BIN = Path(sys.executable).parent
PYTHON = ("lgcloud", "tests", "benchmarks", "library")


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("check", [("check",), ("format", "--check", "--diff")], ids=["lint", "format"])
def test_ruff_is_clean(check):
    result = run(str(BIN / "ruff"), *check, *PYTHON)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean():
    result = run(str(BIN / "mypy"))  # what and how strictly: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_is_clean():
    result = run(str(BIN / "yamllint"), "--strict", "site.yml", "roles", "monitoring")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile_is_clean():
    result = run(str(BIN / "ansible-lint"), "--offline", "--nocolor", "--profile", "production", "site.yml", "roles")
    assert result.returncode == 0, result.stdout + result.stderr

"""The Ansible content is lint clean: yamllint, and ansible-lint at the production profile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lgcloud.paths import PROJECT_ROOT

BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def test_yamllint_is_clean():
    result = run(str(BIN / "yamllint"), "--strict", "site.yml", "roles", "monitoring")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile_is_clean():
    result = run(str(BIN / "ansible-lint"), "--offline", "--nocolor", "--profile", "production", "site.yml", "roles")
    assert result.returncode == 0, result.stdout + result.stderr

"""Where the project's files are: the program, the stacks, the playbook, the roles, the state.

>>> (PROJECT_ROOT / "Pulumi.yaml").is_file()
True
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MONITORING_DIR", "PLAYBOOK", "PROGRAM", "PROJECT_ROOT", "ROLES_DIR", "STACKS_DIR", "STATE_ROOT"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STACKS_DIR = PROJECT_ROOT / "stacks"  # Pulumi.yaml's stackConfigDir
PROGRAM = STACKS_DIR / "__main__.py"  # Pulumi.yaml's main
PLAYBOOK = "site.yml"  # at the project root, beside roles/ and library/
ROLES_DIR = PROJECT_ROOT / "roles"
MONITORING_DIR = PROJECT_ROOT / "monitoring"
STATE_ROOT = PROJECT_ROOT / ".lgcloud"  # per stack: keys, secrets, run artifacts; never in git

"""Disaster-recovery drills: scripted failures, runbook recovery, measured RTO and RPO."""

from .lab import LabError
from .report import markdown
from .report import write as write_report
from .scenarios import SCENARIOS, DrillInvalid
from .scenarios import run as run_drill

__all__ = ["SCENARIOS", "DrillInvalid", "LabError", "markdown", "run_drill", "write_report"]

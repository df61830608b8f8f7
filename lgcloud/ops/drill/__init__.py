"""Disaster-recovery drills: scripted failures, runbook recovery, measured RTO and RPO."""

from ..lab import LabError
from .drill import run_drill
from .report import DrillReport, markdown
from .report import write as write_report
from .scenarios import SCENARIOS, DrillInvalid

__all__ = ["SCENARIOS", "DrillInvalid", "DrillReport", "LabError", "markdown", "run_drill", "write_report"]

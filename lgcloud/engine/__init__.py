"""The embedded engine: runs the Pulumi program without the Pulumi CLI, on Docker."""

from .realise import Change, EngineError, Realiser, connect
from .runner import Outcome, run_program
from .stack import SegmentState, VmState, destroy, engine_conflicts, inventory, running_vms

__all__ = [
    "Change",
    "EngineError",
    "Outcome",
    "Realiser",
    "SegmentState",
    "VmState",
    "connect",
    "destroy",
    "engine_conflicts",
    "inventory",
    "run_program",
    "running_vms",
]

"""The embedded engine: runs the Pulumi program without the Pulumi CLI, on Docker."""

from .realise import Change, EngineError, Realiser, connect
from .runner import Outcome, realise_stack, run_program
from .stack import (
    SegmentState,
    VmState,
    destroy,
    engine_conflicts,
    inventory,
    refuse_unowned,
    running_containers,
    running_vms,
)

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
    "realise_stack",
    "refuse_unowned",
    "running_containers",
    "run_program",
    "running_vms",
]

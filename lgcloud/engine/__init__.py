"""The embedded engine: runs the Pulumi program without the Pulumi CLI, on Docker."""

from .realise import Change, EngineError, Realiser, connect
from .runner import Outcome, run_program
from .stack import destroy, inventory, running_vms

__all__ = ["Change", "EngineError", "Outcome", "Realiser", "connect", "destroy", "inventory", "run_program",
           "running_vms"]

"""``lgcloud up`` and ``lgcloud preview``: make the stack what its config declares, or show what
that would change."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..engine import Change, EngineError, engine_conflicts, realise_stack, refuse_unowned
from ..model.config import ConfigInvalid
from ..model.naming import endpoint_or_default, lab_name, segment_resource, vm_resource, volume_resource
from ..model.topology import Topology, VmPlan, plan
from ..ops.access import VmAccess, reach_and_pin, write_ssh_config
from ..program.site import engine_site
from ..state.failover import fenced_vms
from ..state.slm import PlannedWork, planned_work
from .options import Options, wait_flag

__all__ = ["add", "show_change"]

_MARKS = {
    "create": "[green]+[/]",
    "replace": "[yellow]±[/]",
    "start": "[cyan]▶[/]",
    "delete": "[red]-[/]",
    "unchanged": "[dim]=[/]",
    "fenced": "[magenta]⊘[/]",
    "kept": "[blue]◆[/]",
    "deferred": "[yellow]…[/]",
}


def show_change(opts: Options, topology: Topology | None = None) -> Callable[[Change], None]:
    """Progress on stderr, one line per change (unchanged ones too with -v); with the stack's
    `topology`, a replaced VM says what becomes of its data and whether a primary stops."""
    vms = {vm_resource(opts.stack, vm.name): vm for vm in topology.vms} if topology else {}

    def show(change: Change) -> None:
        if change.action != "unchanged" or opts.flag("verbose"):
            opts.output.err.print(
                f" {_MARKS[change.action]} {change.action:9} {change.kind:9} {change.name} "
                f"[dim]{change.seconds:.1f}s[/]{_consequence(opts.stack, change, vms.get(change.name))}"
            )

    return show


def _consequence(stack: str, change: Change, vm: VmPlan | None) -> str:
    """What a replacement means for the lab: where the VM's data goes, and whether a primary stops."""
    if change.action != "replace" or vm is None:
        return ""
    said = [f"its data stays on {volume_resource(stack, vm.name)}"] if vm.data else []
    if vm.role == "db":
        said.append("its primary database stops while it is replaced")
    return f"  [yellow]{'; '.join(said)}[/]" if said else ""


def _summary(opts: Options, changes: list[Change], seconds: float, preview: bool) -> None:
    counts = Counter(change.action for change in changes)
    unchanged = counts.pop("unchanged", 0)
    if not counts:
        opts.output.done(f"no changes: {unchanged} resources already as declared ({seconds:.1f}s)")
    else:
        parts = ", ".join(f"{n} {action}" for action, n in counts.items())
        opts.output.done(f"{'would change' if preview else 'changed'}: {parts}; {unchanged} unchanged ({seconds:.1f}s)")


def _deploy(opts: Options, preview: bool, work: PlannedWork | None = None) -> int:
    started = time.monotonic()
    values = opts.values()
    cfg = opts.config(values)
    problems = engine_conflicts(cfg)
    if problems:
        raise ConfigInvalid(str(opts.path), problems)
    refuse_unowned(cfg)
    fenced = fenced_vms(cfg.stack)
    topology = plan(cfg)
    with opts.output.err.status(f"{'previewing' if preview else 'bringing up'} stack {cfg.stack} …"):
        outcome = realise_stack(
            cfg, values, show_change(opts, topology), preview=preview, allow_data_loss=opts.flag("allow_data_loss")
        )
    if work is not None and all(c.action == "unchanged" for c in outcome.changes):
        work.nothing_done()
    deferred = [lab_name(cfg.stack, c.name) for c in outcome.changes if c.action == "deferred"]
    if deferred:
        opts.output.note(
            f"{'would wait' if preview else 'waiting'} for the next run: {', '.join(deferred)} (its replica is "
            f"replaced in this one); once `lgcloud configure --stack {cfg.stack}` has the replica streaming, "
            f"`lgcloud up --stack {cfg.stack}` replaces it"
        )
    if fenced:
        opts.output.note(
            f"kept off, fenced by a failover: {', '.join(sorted(fenced))}; "
            f"`lgcloud drill failback --stack {cfg.stack}` brings them back"
        )
    if preview:
        _summary(opts, outcome.changes, time.monotonic() - started, preview)
        if opts.flag("json"):
            opts.output.json(
                {
                    "stack": cfg.stack,
                    "changes": [{"action": c.action, "kind": c.kind, "name": c.name} for c in outcome.changes],
                }
            )
        return 0
    vms: dict[str, Any] = outcome.outputs["vms"]
    ssh_config = write_ssh_config(cfg.stack, vms)
    mgmt = segment_resource(cfg.stack, "mgmt")
    access = [
        VmAccess(
            name,
            vm["addresses"][mgmt],
            vm_resource(cfg.stack, name),
            endpoint_or_default(cfg.sites[engine_site(vm["site"])].endpoint),
            boots=name not in fenced,
        )
        for name, vm in vms.items()
    ]
    known = {vm.name for vm in (*topology.vms, *topology.restore_vms)}
    with opts.output.err.status("waiting for every VM to answer SSH …"):
        # Host keys are read from the VMs' disks, so that no other machine passes for them.
        reached = reach_and_pin(cfg.stack, access, known)
    if reached.silent:
        raise EngineError(
            f"VMs up but not answering SSH within 60 s: {', '.join(reached.silent)}",
            f"see `docker logs {vm_resource(cfg.stack, '<vm>')}`",
        )
    _summary(opts, outcome.changes, time.monotonic() - started, preview)
    if opts.flag("json"):
        opts.output.json(outcome.outputs)
    else:
        opts.output.table(
            f"stack {cfg.stack}",
            ("vm", "site", "role", "mgmt address"),
            [(name, vm["site"], vm["role"], vm["addresses"].get(mgmt, "")) for name, vm in vms.items()],
            caption=f"reach a VM with: ssh -F {ssh_config} <vm>",
        )
    return 0


def _up(opts: Options) -> int:
    with opts.hold("up"), planned_work(opts.stack, "up", "lgcloud up") as work:
        return _deploy(opts, preview=False, work=work)


def _preview(opts: Options) -> int:
    return _deploy(opts, preview=True)


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    for name, run, text, json_text in (
        ("up", _up, "create or update the stack to match its config", "print the stack outputs as JSON"),
        ("preview", _preview, "show what `up` would change, changing nothing", "print the changes as JSON"),
    ):
        sub = verbs.add_parser(name, parents=[common], help=text, description=text)
        sub.add_argument("--json", action="store_true", help=json_text)
        sub.add_argument("-v", "--verbose", action="store_true", help="also list unchanged resources")
        sub.add_argument(
            "--allow-data-loss",
            action="store_true",
            help="delete the data volumes of VMs the config no longer declares (kept otherwise)",
        )
        if name == "up":
            wait_flag(sub)
        sub.set_defaults(run=run)

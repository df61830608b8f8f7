"""``lgcloud configure``: run the Ansible roles on the stack's running VMs; per-host summary."""

from __future__ import annotations

import argparse

from ..engine import running_vms
from ..errors import EXIT_BAD_INPUT, EXIT_FAILED, OperatorError
from ..model.schema import StackConfig
from ..observe.prometheus import Prometheus
from ..observe.slm import verify_service
from ..ops.configure import configure
from ..state.facts import lab_facts
from ..state.failover import served_from_backup
from ..state.slm import in_service_since, planned_work, record_in_service
from .options import Options, wait_flag

__all__ = ["add"]


def run(opts: Options) -> int:
    with opts.hold("configure"):
        return _configure(opts)


def _configure(opts: Options) -> int:
    cfg = opts.config()
    moved = served_from_backup(cfg.stack)
    if moved:
        # The roles make the center primary; run now, they would demote the databases holding the newest data.
        raise OperatorError(
            f"served from the backup site since a drill: {', '.join(moved)}",
            f"run `lgcloud drill failback --stack {cfg.stack}` first (nothing was changed)",
            EXIT_BAD_INPUT,
        )
    running = running_vms(cfg)
    if not running:
        raise OperatorError(f"stack {cfg.stack} has no running VMs", f"run `lgcloud up --stack {cfg.stack}` first")
    err = opts.output.err

    with err.status(f"configuring {len(running)} VMs …") as status:

        def show(host: str, task: str, state: str) -> None:
            if state in ("failed", "unreachable"):
                err.print(f" [red]✗[/] {host}: {task}")
            elif state == "changed" and opts.flag("verbose"):
                err.print(f" [yellow]~[/] {host}: {task}")
            status.update(f"configuring {len(running)} VMs: {host}: {task}")

        if opts.args.check:
            summary = configure(cfg, running, opts.args.limit, opts.args.check, show, full=opts.args.full)
        else:
            with planned_work(cfg.stack, "configure", "lgcloud configure") as work:
                summary = configure(cfg, running, opts.args.limit, opts.args.check, show, full=opts.args.full)
                if summary.succeeded and not summary.total("changed"):
                    work.nothing_done()
    code = 0 if summary.succeeded else EXIT_FAILED
    if summary.succeeded and not opts.args.check and not opts.args.limit:
        _put_into_service(opts, cfg)
    if opts.flag("json"):
        opts.output.json(summary.to_json())
        return code

    def colour(host: str) -> str:
        r = summary.hosts[host]
        return "red" if r.failed or r.unreachable else ("yellow" if r.changed else "green")

    if summary.hosts:
        opts.output.table(
            f"stack {cfg.stack}: configure{' --check' if summary.check else ''}",
            ("vm", "ok", "changed", "failed", "unreachable"),
            [
                (f"[{colour(host)}]{host}[/]", str(r.ok), str(r.changed), str(r.failed), str(r.unreachable))
                for host, r in sorted(summary.hosts.items())
            ],
            right=("ok", "changed", "failed", "unreachable"),
        )
    for host, r in sorted(summary.hosts.items()):
        for failure in r.failures:
            err.print(f"[red]{host}[/]: ", end="")
            err.print(failure, markup=False, highlight=False)
    if summary.converged:
        err.print(f"{len(summary.converged)} VMs unchanged since their last run, not run (`--full` runs them too)")
    if not summary.succeeded and not summary.hosts:
        stdout = (summary.artifacts / "stdout").read_text(errors="replace").strip().splitlines()
        err.print("\n".join(stdout[-15:]), markup=False, highlight=False)
    if summary.succeeded and not summary.hosts:
        err.print(f"✓ every VM is as its last run left it ({summary.seconds:.1f}s)")
        return code
    err.print(
        f"{'✓' if summary.succeeded else '✗'} {len(summary.hosts)} hosts: {summary.total('ok')} ok, "
        f"{summary.total('changed')} changed, {summary.total('failed')} failed, "
        f"{summary.total('unreachable')} unreachable ({summary.seconds:.1f}s); artifacts in {summary.artifacts}"
    )
    return code


def _put_into_service(opts: Options, cfg: StackConfig) -> None:
    """Record when each municipality's service first passed verification: every system it runs
    answered its office's probes. Its availability is measured from then (bring-up excluded)."""
    waiting = [m.id for m in cfg.municipalities if m.id not in in_service_since(cfg.stack)]
    if not waiting:
        return
    facts = lab_facts(cfg.stack)
    with opts.output.err.status(f"verifying from the offices: {', '.join(waiting)} …"):
        verified, failing = verify_service(cfg, Prometheus(facts.prometheus_url), facts.probed_systems, waiting)
    if verified:
        record_in_service(cfg.stack, verified)
        opts.output.note(f"in service from now (availability is measured from here): {', '.join(verified)}")
    if failing:
        opts.output.note(
            f"not yet in service, their offices' probes still fail: {'; '.join(failing)}; "
            "the next `lgcloud configure` verifies them again"
        )


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sub = verbs.add_parser("configure", parents=[common], help="run the Ansible roles on the stack's VMs")
    sub.add_argument("--limit", help="only hosts matching this Ansible pattern (e.g. municipality_a_city)")
    sub.add_argument("--check", action="store_true", help="report what would change, changing nothing")
    sub.add_argument(
        "--full",
        action="store_true",
        help="run every VM's roles, also those unchanged since their last successful run",
    )
    sub.add_argument("-v", "--verbose", action="store_true", help="also list each changed task")
    sub.add_argument("--json", action="store_true", help="per-host results as JSON")
    wait_flag(sub)
    sub.set_defaults(run=run)

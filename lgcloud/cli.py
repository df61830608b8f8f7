"""``lgcloud``: bring the lab up, look at it, take it down.

    lgcloud validate --stack dev
    lgcloud up --stack dev
    lgcloud status --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .config import PROJECT_ROOT, ConfigInvalid, StackConfig, parse, read_file, stack_file, stack_name

__all__ = ["main"]

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


@dataclass
class Options:
    """What every verb is given: the parsed arguments and where to write."""

    args: argparse.Namespace
    out: Console  # data
    err: Console  # progress and logs

    @property
    def path(self) -> Path:
        return Path(self.args.file) if getattr(self.args, "file", None) else stack_file(self.args.stack)

    @property
    def stack(self) -> str:
        return stack_name(self.path) if getattr(self.args, "file", None) else self.args.stack

    def values(self) -> dict:
        return read_file(self.path)

    def config(self) -> StackConfig:
        return parse(self.values(), self.stack, str(self.path))


def _validate(opts: Options) -> int:
    from .engine.stack import engine_conflicts
    from .topology import plan

    cfg = opts.config()
    if not opts.args.offline:
        problems = engine_conflicts(cfg)
        if problems:
            raise ConfigInvalid(str(opts.path), problems)
    topology = plan(cfg)
    opts.err.print(f"[green]✓[/] {opts.path}: stack {cfg.stack} is valid: {len(cfg.municipalities)} "
                   f"municipalities, {len(topology.segments)} segments, {len(topology.vms)} VMs")
    return 0


def _progress(opts: Options):
    marks = {"create": "[green]+[/]", "replace": "[yellow]±[/]", "start": "[cyan]▶[/]",
             "delete": "[red]-[/]", "unchanged": "[dim]=[/]"}

    def show(change) -> None:
        if change.action != "unchanged" or opts.args.verbose:
            opts.err.print(f" {marks[change.action]} {change.action:9} {change.kind:9} {change.name} "
                           f"[dim]{change.seconds:.1f}s[/]")
    return show


def _summary(opts: Options, changes, seconds: float, preview: bool) -> None:
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.action] = counts.get(change.action, 0) + 1
    done = {k: v for k, v in counts.items() if k != "unchanged"}
    verb = "would change" if preview else "changed"
    if not done:
        opts.err.print(f"[green]✓[/] no changes: {counts.get('unchanged', 0)} resources already as declared "
                       f"({seconds:.1f}s)")
    else:
        parts = ", ".join(f"{v} {k}" for k, v in done.items())
        opts.err.print(f"[green]✓[/] {verb}: {parts}; {counts.get('unchanged', 0)} unchanged ({seconds:.1f}s)")


def _deploy(opts: Options, preview: bool) -> int:
    from .engine import EngineError, Realiser, run_program
    from .engine.stack import engine_conflicts

    started = time.monotonic()
    values = opts.values()
    cfg = parse(values, opts.stack, str(opts.path))
    problems = engine_conflicts(cfg)
    if problems:
        raise ConfigInvalid(str(opts.path), problems)
    realiser = Realiser(cfg.stack, preview=preview, on_change=_progress(opts))
    with opts.err.status(f"{'previewing' if preview else 'bringing up'} stack {cfg.stack} …"):
        outcome = run_program(cfg, values, realiser)
    if not preview:
        from .access import wait_for_ssh, write_ssh_config

        ssh_config = write_ssh_config(cfg.stack, outcome.outputs["vms"])
        mgmt = f"lgcloud-{cfg.stack}-mgmt"
        with opts.err.status("waiting for every VM to answer SSH …"):
            silent = wait_for_ssh({n: vm["addresses"][mgmt] for n, vm in outcome.outputs["vms"].items()})
        if silent:
            raise EngineError(f"VMs up but not answering SSH within 60 s: {', '.join(silent)}; "
                              f"see `docker logs lgcloud-{cfg.stack}-<vm>`")
    _summary(opts, outcome.changes, time.monotonic() - started, preview)
    if not preview:
        _print_vms(opts, cfg, outcome.outputs, ssh_config)
    return 0


def _print_vms(opts: Options, cfg: StackConfig, outputs: dict, ssh_config: Path) -> None:
    if opts.args.json:
        opts.out.print_json(json.dumps(outputs))
        return
    table = Table(title=f"stack {cfg.stack}", caption=f"reach a VM with: ssh -F {ssh_config} <vm>")
    for column in ("vm", "site", "role", "mgmt address"):
        table.add_column(column)
    for name, vm in outputs["vms"].items():
        table.add_row(name, vm["site"], vm["role"], vm["addresses"].get(f"lgcloud-{cfg.stack}-mgmt", ""))
    opts.out.print(table)


def _up(opts: Options) -> int:
    return _deploy(opts, preview=False)


def _preview(opts: Options) -> int:
    return _deploy(opts, preview=True)


def _down(opts: Options) -> int:
    from .drill.runbook import forget_failovers
    from .engine import destroy

    started = time.monotonic()
    cfg = opts.config()
    with opts.err.status(f"removing stack {cfg.stack} …"):
        changes = destroy(cfg, _progress(opts))
    forget_failovers(cfg.stack)  # the VMs a drill moved are gone with the stack
    opts.err.print(f"[green]✓[/] stack {cfg.stack}: removed {len(changes)} resources "
                   f"({time.monotonic() - started:.1f}s)")
    return 0


def _status(opts: Options) -> int:
    from .drill.runbook import failover_state
    from .engine import inventory

    cfg = opts.config()
    vms, segments = inventory(cfg)
    moved = failover_state(cfg.stack)
    if opts.args.json:
        opts.out.print_json(json.dumps({"stack": cfg.stack, "vms": [asdict(v) for v in vms], "segments": segments,
                                        "served_from_backup": moved}))
        return 0
    if not vms and not segments:
        opts.err.print(f"stack {cfg.stack} is not up; bring it up with `lgcloud up --stack {cfg.stack}`")
        return 0
    table = Table(title=f"stack {cfg.stack}")
    for column in ("vm", "site", "municipality", "role", "state", "addresses"):
        table.add_column(column)
    for v in vms:
        colour = "green" if v.state == "running" else "red"
        table.add_row(v.name, v.site, v.municipality, v.role, f"[{colour}]{v.state}[/]",
                      " ".join(f"{k}={a}" for k, a in v.addresses.items()))
    opts.out.print(table)
    if moved:
        opts.err.print(f"[yellow]served from the backup site since a drill:[/] {', '.join(moved)}; "
                       f"`lgcloud drill failback --stack {cfg.stack}` switches back")
    return 0


def _configure(opts: Options) -> int:
    from .configure import configure, summarise
    from .engine import running_vms

    from .drill.runbook import failover_state

    cfg = opts.config()
    moved = failover_state(cfg.stack)
    if moved:
        # The roles make the center primary; run now, they would demote the databases holding the newest data.
        opts.err.print(f"[red]✗[/] served from the backup site since a drill: {', '.join(moved)}; "
                       f"run `lgcloud drill failback --stack {cfg.stack}` first (nothing was changed)")
        return EXIT_BAD_INPUT
    running = running_vms(cfg)
    if not running:
        opts.err.print(f"stack {cfg.stack} has no running VMs; run `lgcloud up --stack {cfg.stack}` first")
        return EXIT_FAILED
    seen: dict[str, str] = {}

    def show(host: str, task: str, state: str) -> None:
        if state in ("failed", "unreachable"):
            opts.err.print(f" [red]✗[/] {host}: {task}")
        elif state == "changed" and opts.args.verbose:
            opts.err.print(f" [yellow]~[/] {host}: {task}")
        seen[host] = task
        status.update(f"configuring {len(running)} VMs: {host}: {task}")

    with opts.err.status(f"configuring {len(running)} VMs …") as status:
        outcome = configure(cfg, running, opts.args.limit, opts.args.check, show)
    if opts.args.json:
        opts.out.print_json(json.dumps({"rc": outcome.rc, "seconds": round(outcome.seconds, 2),
                                        "hosts": {h: asdict(r) for h, r in outcome.hosts.items()}}))
        return 0 if outcome.rc == 0 else EXIT_FAILED
    table = Table(title=f"stack {cfg.stack}: configure{' --check' if opts.args.check else ''}")
    for column in ("vm", "ok", "changed", "failed", "unreachable"):
        table.add_column(column, justify="left" if column == "vm" else "right")
    for host, r in sorted(outcome.hosts.items()):
        colour = "red" if r.failed or r.unreachable else ("yellow" if r.changed else "green")
        table.add_row(f"[{colour}]{host}[/]", str(r.ok), str(r.changed), str(r.failed), str(r.unreachable))
    opts.out.print(table)
    for host, r in sorted(outcome.hosts.items()):
        for failure in r.failures:
            opts.err.print(f"[red]{host}[/]: ", end="")
            opts.err.print(failure, markup=False, highlight=False)
    if outcome.rc != 0 and not outcome.hosts:
        stdout = (outcome.artifacts / "stdout").read_text(errors="replace").strip().splitlines()
        opts.err.print("\n".join(stdout[-15:]), markup=False, highlight=False)
    totals = summarise(outcome)
    opts.err.print(f"{'✓' if outcome.rc == 0 else '✗'} {len(outcome.hosts)} hosts: {totals['ok']} ok, "
                   f"{totals['changed']} changed, {totals['failed']} failed, {totals['unreachable']} unreachable "
                   f"({outcome.seconds:.1f}s); artifacts in {outcome.artifacts}")
    return 0 if outcome.rc == 0 else EXIT_FAILED


def _drill(opts: Options) -> int:
    from .drill import DrillInvalid, LabError, markdown, run_drill, write_report

    cfg = opts.config()
    started = time.time()

    def show(step) -> None:
        took = f" ({step.seconds:.2f}s)" if step.seconds else ""
        opts.err.print(f"[dim]+{step.at - started:6.2f}s[/] {step.municipality:>10}  {step.name}{took}"
                       f"[dim]{'  ' + step.detail if step.detail else ''}[/]", highlight=False)

    try:
        report = run_drill(cfg, opts.args.scenario, opts.args.municipality, show)
    except DrillInvalid as exc:
        _fail(opts, f"{exc}")
        opts.err.print("nothing was changed")
        return EXIT_BAD_INPUT
    except (LabError, KeyboardInterrupt) as exc:
        from .drill.runbook import failover_state

        _fail(opts, f"the drill stopped: {exc or 'interrupted'}")
        moved = failover_state(cfg.stack)
        opts.err.print(f"served from the backup site: {', '.join(moved)}; `lgcloud drill failback --stack {cfg.stack}` "
                       "switches back" if moved else
                       f"nothing failed over; `lgcloud up --stack {cfg.stack}` starts any VM the drill stopped")
        return EXIT_FAILED
    directory = write_report(report, opts.args.report)
    if opts.args.json:
        opts.out.print_json(json.dumps(report, ensure_ascii=False))
    else:
        table = Table(title=f"drill {report['scenario']} on {cfg.stack}")
        for column in ("municipality", "replication", "RTO", "RPO", "lost", "integrity", "verdict"):
            table.add_column(column)
        for m in report["municipalities"]:
            rto = "—" if m["rto_seconds"] is None else f"{m['rto_seconds']:.2f}s ≤ {m['targets']['rto_seconds']:g}s"
            table.add_row(f"{m['name']} {m['code']}", m["replication"], rto,
                          f"{m['rpo_seconds']:.2f}s ≤ {m['targets']['rpo_seconds']:g}s", str(m["lost_writes"]),
                          "ok" if m["integrity"]["ok"] else "[red]differs[/]",
                          "[green]met[/]" if m["passed"] else "[red]missed[/]")
        opts.out.print(table)
        for error in report["errors"]:
            _fail(opts, error)
        opts.err.print(f"state: {report['state_after']}", highlight=False)
    opts.err.print(f"{'[green]✓ passed[/]' if report['passed'] else '[red]✗ failed[/]'}; "
                   f"report: {directory / 'report.md'}")
    return 0 if report["passed"] else EXIT_FAILED


def _graph(opts: Options) -> int:
    from .graph import render

    cfg = opts.config()
    path = render(cfg, Path(opts.args.out))
    opts.err.print(f"[green]✓[/] wrote {path}")
    return 0


def _exporter(opts: Options) -> int:
    from . import exporter

    cfg = opts.config()
    if opts.args.stop:
        stopped = exporter.stop(cfg.stack)
        opts.err.print(f"[green]✓[/] exporter of stack {cfg.stack} {'stopped' if stopped else 'was not running'}")
        return 0
    try:
        if opts.args.detach:
            pid = exporter.detach(cfg, opts.args.port)
            opts.err.print(f"[green]✓[/] exporter of stack {cfg.stack} on http://{exporter.exporter_address(cfg)}:"
                           f"{opts.args.port}/metrics (pid {pid})")
            return 0
        exporter.serve(cfg, opts.args.port)
    except RuntimeError as exc:
        _fail(opts, str(exc))
        return EXIT_FAILED
    return 0


def _sla(opts: Options) -> int:
    from .sla import Prometheus, evaluate, exit_code, prometheus_url, render

    cfg = opts.config()
    url = opts.args.prometheus or prometheus_url(cfg)
    try:
        rows = evaluate(cfg, Prometheus(url), opts.args.window, opts.args.municipality or ())
    except ValueError as exc:
        _fail(opts, f"{exc}")
        return EXIT_BAD_INPUT
    render(rows, cfg, url, opts.out, opts.err, opts.args.json)
    return exit_code(rows)


def _report(opts: Options) -> int:
    from .utilization import report

    try:
        path = report(opts.config(), Path(opts.args.out), opts.args.window, opts.args.prometheus, opts.err)
    except ValueError as exc:
        _fail(opts, f"{exc}")
        return EXIT_BAD_INPUT
    opts.out.print(str(path))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lgcloud", description="A lab for a municipal joint-use cloud (自治体クラウド).")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--stack", default="dev", help="stack name: stacks/Pulumi.<stack>.yaml (default: dev)")
        sub.add_argument("--file", help="a stack config file (Pulumi.<stack>.yaml) instead of --stack")
        return sub

    v = verb("validate", _validate, "check a stack config without creating anything")
    v.add_argument("--offline", action="store_true", help="skip the check against networks on the engine")
    for name, handler, text in (("up", _up, "create or update the stack to match its config"),
                                ("preview", _preview, "show what `up` would change, changing nothing")):
        sub = verb(name, handler, text)
        sub.add_argument("--json", action="store_true", help="print the stack outputs as JSON")
        sub.add_argument("-v", "--verbose", action="store_true", help="also list unchanged resources")
    sub = verb("down", _down, "remove every resource of the stack, and nothing else")
    sub.add_argument("-v", "--verbose", action="store_true")
    sub = verb("status", _status, "show the stack's VMs and segments as they are now")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub = verb("configure", _configure, "run the Ansible roles on the stack's VMs")
    sub.add_argument("--limit", help="only hosts matching this Ansible pattern (e.g. municipality_a_city)")
    sub.add_argument("--check", action="store_true", help="report what would change, changing nothing")
    sub.add_argument("-v", "--verbose", action="store_true", help="also list each changed task")
    sub.add_argument("--json", action="store_true", help="per-host results as JSON")
    from .drill import SCENARIOS

    sub = verb("drill", _drill, "rehearse a disaster while the offices write; measure RTO, RPO, integrity")
    sub.add_argument("scenario", choices=list(SCENARIOS), metavar="SCENARIO",
                     help="; ".join(f"{k}: {v}" for k, v in SCENARIOS.items()))
    sub.add_argument("--municipality", help="id or 地方公共団体コード (db-loss, app-loss, failback)")
    sub.add_argument("--report", help="directory for report.json and report.md "
                                      "(default .lgcloud/<stack>/drills/<time>-<scenario>)")
    sub.add_argument("--json", action="store_true", help="print the report as JSON")
    sub = verb("graph", _graph, "draw the stack's topology (graphviz)")
    sub.add_argument("--out", default="docs/topology.png", help="image to write (.png or .svg)")
    sub = verb("exporter", _exporter, "serve the lab's facts (allocation, use, SLA targets, drills) to Prometheus")
    sub.add_argument("--port", type=int, default=9480, help="port on the mgmt segment's first address (default 9480)")
    sub.add_argument("--detach", action="store_true", help="(re)start it in the background and return")
    sub.add_argument("--stop", action="store_true", help="stop the background exporter")
    sub = verb("sla", _sla, "evaluate every SLA target against the lab's Prometheus (exit 1: missed, "
               "3: some target not evaluable)")
    sub.add_argument("--window", help="period to evaluate over, e.g. 1h or 30d (default: each target's own)")
    sub.add_argument("--municipality", action="append", help="only this municipality (id or code; repeatable)")
    sub.add_argument("--prometheus", help="Prometheus URL (default: the monitor's mgmt address, port 9090)")
    sub.add_argument("--json", action="store_true", help="machine-readable results")
    sub = verb("report", _report, "write a report: `utilization` (use against allocation and capacity)")
    sub.add_argument("kind", choices=["utilization"], help="which report")
    sub.add_argument("--window", default="1h", help="period measured, e.g. 30m, 1h, 1d (default 1h)")
    sub.add_argument("--out", default="reports", help="folder for the HTML report, its charts and JSON")
    sub.add_argument("--prometheus", help="Prometheus URL (default: the monitor's mgmt address, port 9090)")
    return parser


def _fail(opts: Options, message: str) -> None:
    opts.err.print("[red]✗[/] ", end="")
    opts.err.print(message, markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    from .engine import EngineError
    from .engine.translate import Unsupported

    args = _parser().parse_args(argv)
    opts = Options(args, Console(soft_wrap=True), Console(stderr=True, soft_wrap=True))
    try:
        return args.handler(opts)
    except ConfigInvalid as exc:
        _fail(opts, str(exc))
        opts.err.print("nothing was created; fix the config and retry")
        return EXIT_BAD_INPUT
    except (EngineError, Unsupported) as exc:
        _fail(opts, str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        opts.err.print("interrupted; run the same command again to complete it")
        return 130


if __name__ == "__main__":
    sys.exit(main())

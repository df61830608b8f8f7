"""``lgcloud drill SCENARIO``: rehearse a disaster while the offices write; RTO, RPO, integrity."""

from __future__ import annotations

import argparse
import time

from ..errors import EXIT_FAILED
from ..ops.drill import SCENARIOS, LabError, run_drill, write_report
from ..ops.drill.runbook import Step
from ..state.failover import served_from_backup
from ..state.slm import planned_work
from .options import Options, wait_flag

__all__ = ["add"]


def run(opts: Options) -> int:
    with opts.hold("drill"):
        return _drill(opts)


def _drill(opts: Options) -> int:
    cfg = opts.config()
    started = time.time()
    output = opts.output

    def show(step: Step) -> None:
        took = f" ({step.seconds:.2f}s)" if step.seconds else ""
        output.err.print(
            f"[dim]+{step.at - started:6.2f}s[/] {step.municipality:>10}  {step.name}{took}"
            f"[dim]{'  ' + step.detail if step.detail else ''}[/]",
            highlight=False,
        )

    scenario = opts.args.scenario
    kind = "failback" if scenario == "failback" else "drill"
    # A drill of one municipality is planned work for it only; an unknown one is the drill's to refuse.
    scope = [m.id for m in cfg.municipalities if opts.args.municipality in (m.id, m.code)]
    try:
        with planned_work(cfg.stack, kind, f"lgcloud drill {scenario}", scope):
            report = run_drill(cfg, scenario, opts.args.municipality, show)
    except (LabError, KeyboardInterrupt) as exc:
        moved = served_from_backup(cfg.stack)
        output.fail(
            f"the drill stopped: {exc or 'interrupted'}",
            f"served from the backup site: {', '.join(moved)}; `lgcloud drill failback --stack {cfg.stack}` "
            "switches back"
            if moved
            else f"nothing failed over; `lgcloud up --stack {cfg.stack}` starts any VM the drill stopped",
        )
        return EXIT_FAILED
    directory = write_report(report, opts.args.report)
    if opts.flag("json"):
        output.json(report.to_json())
    else:
        output.table(
            f"drill {report.scenario} on {cfg.stack}",
            ("municipality", "replication", "RTO", "RPO", "lost", "integrity", "verdict"),
            [
                (
                    f"{m.name} {m.code}",
                    m.replication,
                    "—" if m.rto_seconds is None else f"{m.rto_seconds:.2f}s ≤ {m.targets.rto_seconds:g}s",
                    f"{m.rpo_seconds:.2f}s ≤ {m.targets.rpo_seconds:g}s",
                    str(m.lost_writes),
                    "ok" if m.integrity.ok else "[red]differs[/]",
                    "[green]met[/]" if m.passed else "[red]missed[/]",
                )
                for m in report.municipalities
            ],
        )
        if report.linkage is not None:
            k = report.linkage
            output.note(
                f"番号連携: {k.requester} asked {k.provider} every second, {k.answered} of {k.attempts} answered; "
                f"RTO {'—' if k.rto_seconds is None else f'{k.rto_seconds:.2f}s'} ≤ {k.rto_target_seconds:g}s, "
                f"{len(k.lost_request_ids)} answered queries missing from the 情報提供等記録: "
                + ("[green]met[/]" if k.passed else "[red]missed[/]")
            )
        output.note(f"state: {report.state_after}")
    # On stderr in either mode, after the timeline where a reader looks: what the office must enter
    # again (counted here; the 住民票コード are in the report, kept out of terminals and CI logs),
    # and why a failed drill failed.
    for m in report.municipalities:
        if m.rolled_back_codes:
            output.note(
                f"{m.id}: {len(m.rolled_back_codes)} registration(s) after the damage were rolled back; "
                f"enter them again (listed in {directory / 'report.md'})"
            )
        if m.unreplicated_codes:
            output.note(
                f"{m.id}: {len(m.unreplicated_codes)} row(s) only the fenced center primary held, kept in "
                f"{m.unreplicated_file} (0600); enter them again"
            )
        for problem in m.problems:
            output.fail(f"{m.id}: {problem}")
    for error in report.errors:
        output.fail(error)
    output.err.print(
        f"{'[green]✓ passed[/]' if report.passed else '[red]✗ failed[/]'}; report: {directory / 'report.md'}"
    )
    return 0 if report.passed else EXIT_FAILED


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "rehearse a disaster while the offices write; measure RTO, RPO, integrity"
    sub = verbs.add_parser("drill", parents=[common], help=text, description=text)
    sub.add_argument(
        "scenario",
        choices=list(SCENARIOS),
        metavar="SCENARIO",
        help="; ".join(f"{name}: {s.description}" for name, s in SCENARIOS.items()),
    )
    sub.add_argument("--municipality", help="id or 地方公共団体コード (db-loss, app-loss, data-corruption, failback)")
    sub.add_argument(
        "--report", help="directory for report.json and report.md (default .lgcloud/<stack>/drills/<time>-<scenario>)"
    )
    sub.add_argument("--json", action="store_true", help="print the report as JSON")
    wait_flag(sub)
    sub.set_defaults(run=run)

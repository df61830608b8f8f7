"""Point-in-time recovery of a municipality's database onto its restore VM, for inspection.

The restore VM (``<municipality>-db-restore``) sits beside the live primary on the municipality's
center segment, reached by nobody but the operators (SSH on mgmt): the restored database answers
only on its own loopback. Its backup certificate admits it to its own municipality's stanza. The
steps, each timed: check the target against what the repository holds, record the restore (so
every `up` keeps the VM), make the VM, give it pgBackRest (`configure` limited to it), restore,
start PostgreSQL, wait until recovery reached the target and promoted::

    report = restore(cfg, values, "a-city", RestoreTarget.at("2026-12-01T10:30:00+09:00"))
"""

from __future__ import annotations

import datetime
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine import realise_stack
from ..errors import EXIT_BAD_INPUT, OperatorError
from ..model.naming import volume_resource
from ..model.schema import StackConfig
from ..model.topology import plan
from ..state.failover import served_from_backup
from ..state.restores import Restore, active_restores, forget_restore, record_restore
from .access import wait_for_ssh, write_ssh_config
from .backup import RestoreTarget, backups, restore_point
from .configure import configure
from .drill.runbook import Step, Timeline, archive_current_wal, restore_before, wait_promoted
from .lab import PG_BIN, PG_DATA, Lab, LabError

__all__ = ["RestoreReport", "discard", "restore", "restore_in_place"]

RECOVERY_TIMEOUT = 600  # seconds for the restored cluster to replay its WAL and promote


@dataclass
class RestoreReport:
    municipality: str
    vm: str
    target: str
    backup: str  # the label of the backup set restored from
    residents: int  # rows in the restored 住民記録
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds

    @property
    def recovery_seconds(self) -> float:
        """From the restore command to a promoted database answering: what PITR itself costs."""
        return self.steps.get("restore", 0.0) + self.steps.get("recover", 0.0)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "recovery_seconds": round(self.recovery_seconds, 2)}


def _as_declared(cfg: StackConfig, values: dict[str, Any]) -> None:
    """Refuse (exit 2) while the stack has changes not yet applied: making or removing a restore VM
    runs the stack's program, which would apply them too, under a verb that must touch nothing live."""
    pending = [
        c for c in realise_stack(cfg, values, preview=True).changes if c.action not in ("unchanged", "fenced", "kept")
    ]
    if pending:
        said = ", ".join(f"{c.action} {c.name}" for c in pending[:5]) + (" …" if len(pending) > 5 else "")
        raise OperatorError(
            f"stack {cfg.stack} is not as its config declares ({len(pending)} change(s) pending: {said}); "
            "a restore would apply them too",
            f"see `lgcloud preview --stack {cfg.stack}`, then `lgcloud up --stack {cfg.stack}` first",
            EXIT_BAD_INPUT,
        )


def restore(
    cfg: StackConfig,
    values: dict[str, Any],
    municipality: str,
    target: RestoreTarget,
    on_step: Callable[[str, float], None] = lambda step, seconds: None,
) -> RestoreReport:
    """Restore `municipality`'s backup to `target` on its restore VM; the VM stays for inspection."""
    lab = Lab(cfg)
    try:
        m = lab.pair(municipality)
        vm = plan(cfg).restore_vm(m.id).name
        if m.id in active_restores(cfg.stack):
            raise OperatorError(
                f"{vm} already holds a restore of {m.id} ({active_restores(cfg.stack)[m.id].target})",
                f"look at it with `ssh -F .lgcloud/{cfg.stack}/ssh_config {vm}`, then "
                f"`lgcloud restore --stack {cfg.stack} --municipality {m.id} --discard`",
                EXIT_BAD_INPUT,
            )
        report = RestoreReport(m.id, vm, target.describe(), "", 0)

        def step(name: str, started: float) -> None:
            report.steps[name] = time.monotonic() - started
            on_step(name, report.steps[name])

        started = time.monotonic()
        [stanza] = backups(lab, m.id)
        report.backup = restore_point(stanza, target, datetime.datetime.now(datetime.UTC))
        if lab.running(m.db) and lab.sql(m.db, "SELECT pg_is_in_recovery()", database="postgres") == "f":
            archive_current_wal(lab, m.db)  # the last writes, up to the moment asked for, in the repository
        step("check", started)

        started = time.monotonic()
        _as_declared(cfg, values)
        record_restore(cfg.stack, m.id, Restore(time.time(), target.describe()))
        outcome = realise_stack(cfg, values)
        vms = outcome.outputs["vms"]
        write_ssh_config(cfg.stack, vms)
        if wait_for_ssh({vm: lab.mgmt(vm)}):
            raise LabError(f"{vm} does not answer SSH; see `docker logs` of its container")
        lab.pin_host_keys([vm])
        step("vm", started)

        started = time.monotonic()
        summary = configure(cfg, {vm}, limit=vm)
        if not summary.succeeded:
            said = "; ".join(f for result in summary.hosts.values() for f in result.failures)
            raise LabError(f"configuring {vm} failed: {said or summary.status}")
        step("configure", started)

        started = time.monotonic()
        # Over the image's empty cluster, which the fresh volume starts with.
        command = ["pgbackrest", f"--stanza={m.id}", "--delta", *target.pgbackrest_args(report.backup), "restore"]
        lab.run(vm, "runuser -u postgres -- " + shlex.join(command), timeout=3600)
        step("restore", started)

        started = time.monotonic()
        lab.run(
            vm,
            f"runuser -u postgres -- {PG_BIN}/pg_ctl -D {PG_DATA} -w -t {RECOVERY_TIMEOUT} "
            f"-o '-c config_file=/etc/postgresql/15/main/postgresql.conf' -l /var/log/postgresql/restore.log start",
            timeout=RECOVERY_TIMEOUT + 30,
        )
        wait_promoted(lab, vm, RECOVERY_TIMEOUT)
        step("recover", started)
        report.residents = int(lab.sql(vm, "select count(*) from residents"))
        return report
    finally:
        lab.close()


def discard(cfg: StackConfig, values: dict[str, Any], municipality: str) -> str:
    """Remove the municipality's restore VM and its volume (a copy of backed-up data); its name."""
    lab = Lab(cfg)
    try:
        m = lab.pair(municipality)
        vm = plan(cfg).restore_vm(m.id).name
        if m.id not in active_restores(cfg.stack):
            raise OperatorError(f"{m.id} has no restore to discard", "", EXIT_BAD_INPUT)
        _as_declared(cfg, values)
        forget_restore(cfg.stack, m.id)
        realise_stack(cfg, values)
        lab.remove_volume(volume_resource(cfg.stack, vm), "center")
        return vm
    finally:
        lab.close()


def restore_in_place(
    cfg: StackConfig, municipality: str, target: RestoreTarget, on_step: Callable[[Step], None] = lambda step: None
) -> list[Step]:
    """Put the municipality's live database back to `target` from the backups: writes stop, the
    primary is restored in place (its cluster kept aside), the replica rebuilt from it, service back.
    Every write after `target` leaves service; the caller shows that and asks first."""
    lab = Lab(cfg)
    try:
        m = lab.pair(municipality)
        if m.id in served_from_backup(cfg.stack):
            raise OperatorError(
                f"{m.id} is served from the backup site since a failover; in place means on the center's primary",
                f"`lgcloud drill failback --stack {cfg.stack} --municipality {m.id}` first",
                EXIT_BAD_INPUT,
            )
        [stanza] = backups(lab, m.id)
        backup = restore_point(stanza, target, datetime.datetime.now(datetime.UTC))
        timeline = Timeline(on_step=on_step)
        restore_before(lab, m, timeline, target, backup)
        return timeline.steps
    finally:
        lab.close()

"""Service level management over a month of data: `lgcloud sla` (each target's 30-day window) and
`lgcloud report sla` (last month, every municipality) for the 3 municipalities of `dev` and the 30
of `scale`, end to end (a new process each, as an operator runs them).

    .venv/bin/python benchmarks/slm.py [--stacks dev,scale] [--runs 3] [--step 5] [--keep]

No lab runs a month in a benchmark, so a throwaway Prometheus (the golden image's, on loopback
only) is backfilled with 32 days of what the lab's holds, at the lab's 5 s resolution unless
--step says otherwise: each office's probe of each system (result and duration) with one
unplanned outage per municipality (its alert firing) and one outage inside planned work, the
backup age, and every VM's use (at 60 s). The stacks' state directories for the run hold when
each municipality was put into service and its planned work; they are removed afterwards.

Goals (the SLM issue): `lgcloud sla` under 2 s, `lgcloud report sla` under 20 s; printed with the
ratio of each figure to its goal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import LGCLOUD, print_table, run, save

from lgcloud.model.calendar import JST
from lgcloud.model.config import load_stack, stack_file
from lgcloud.model.naming import municipality_ids
from lgcloud.model.topology import plan
from lgcloud.state.directory import state_dir
from lgcloud.state.slm import end_maintenance, record_in_service, start_maintenance

CONTAINER = "lgcloud-slm-bench-prometheus"
PORT = 19091
GOALS = {"sla": 2.0, "report": 20.0}
DAYS = 32
SYSTEMS = ("jumin", "zei", "linkage")
OUTAGE = 240  # seconds of the unplanned outage of each municipality's 住民記録
PLANNED = 1200  # seconds of each municipality's planned work, every system down inside it


def bench_name(stack: str) -> str:
    return f"slmb{stack}"[:12]


def _at(day: dt.date, hour: int, minute: int) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=JST).timestamp())


def _series(out, labels: str, start: int, end: int, step: int, down: list[tuple[int, int]]) -> None:
    """One probe's results every `step` seconds: 1, and 0 within the spans it is `down`."""

    def aligned(at: int) -> int:
        return start + -(-(min(max(at, start), end) - start) // step) * step

    t = start
    for a, b in down:
        out.write("".join(f"{labels} 1 {u}\n" for u in range(t, aligned(a), step)))
        out.write("".join(f"{labels} 0 {u}\n" for u in range(aligned(a), aligned(b), step)))
        t = aligned(b)
    out.write("".join(f"{labels} 1 {u}\n" for u in range(t, end, step)))


def _p95(durations: list[str], probed: range, i: int) -> str:
    """quantile_over_time(0.95) of the minute's probe durations, as Prometheus interpolates it."""
    values = sorted(float(durations[(u + i) % 997]) for u in probed)
    rank = 0.95 * (len(values) - 1)
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return f"{values[low] + (rank - low) * (values[high] - values[low]):.4f}"


def backfill(stacks: list[str], path: Path, start: int, end: int, step: int) -> dict[str, list[tuple]]:
    """Write the OpenMetrics text; returns each bench stack's planned work (start, end, municipality)."""
    first = dt.datetime.fromtimestamp(start, JST).date() + dt.timedelta(days=1)
    planned: dict[str, list[tuple]] = {}
    durations = [f"{0.02 + (i * 7919 % 997) / 997 * 0.06:.4f}" for i in range(997)]
    with path.open("w") as out:
        out.write("# TYPE probe_success gauge\n")
        for stack in stacks:
            cfg = load_stack(stack)
            planned[stack] = []
            for i, m in enumerate(cfg.municipalities):
                down_at = _at(first + dt.timedelta(days=i % 28), 10, i % 60)
                work_at = _at(first + dt.timedelta(days=(i + 7) % 28), 2, 0)
                planned[stack].append((work_at, work_at + PLANNED, m.id))
                for system in SYSTEMS:
                    labels = f'probe_success{{job="probe",municipality="{m.id}",system="{system}"}}'
                    down = [(work_at, work_at + PLANNED)] + ([(down_at, down_at + OUTAGE)] if system == "jumin" else [])
                    _series(out, labels, start, end, step, sorted(down))
        out.write("# TYPE probe_duration_seconds gauge\n")
        for stack in stacks:
            for i, m in enumerate(load_stack(stack).municipalities):
                for system in SYSTEMS:
                    labels = f'probe_duration_seconds{{job="probe",municipality="{m.id}",system="{system}"}}'
                    out.write("".join(f"{labels} {durations[(t + i) % 997]} {t}\n" for t in range(start, end, step)))
        # What the monitor's minute rules (monitoring/rules/sla.yml) record from those probes, each
        # minute 2.5 s after a probe (the lab's evaluations and scrapes never fall together).
        minutes = range(start + 60 - start % 60 + 2, end, 60)

        def probed(t: int) -> range:  # the probes a rule evaluated at t + 0.5 reads: [t - 59.5, t + 0.5]
            return range(start + -(-(t - 59 - start) // step) * step, t + 1, step)

        per_minute = len(probed(minutes[0]))
        failures: dict[tuple[int, str, str], dict[int, int]] = {}
        for stack in stacks:
            for i, m in enumerate(load_stack(stack).municipalities):
                down_at = _at(first + dt.timedelta(days=i % 28), 10, i % 60)
                work_at = _at(first + dt.timedelta(days=(i + 7) % 28), 2, 0)
                for system in SYSTEMS:
                    down = [(work_at, work_at + PLANNED)] + ([(down_at, down_at + OUTAGE)] if system == "jumin" else [])
                    failures[(i, m.id, system)] = {
                        t: sum(1 for u in probed(t) if any(a <= u < b for a, b in down))
                        for t in minutes
                        if any(a - 60 <= t < b + 60 for a, b in down)
                    }
        for name, changes, usual in (
            ("sum1m", lambda failed: {t: per_minute - n for t, n in failed.items()}, per_minute),
            ("count1m", lambda failed: {}, per_minute),
            ("min1m", lambda failed: {t: 0 for t, n in failed.items() if n}, 1),
        ):
            out.write(f"# TYPE municipality_system:probe_success:{name} gauge\n")
            for (_, municipality, system), failed in failures.items():
                labels = f'municipality_system:probe_success:{name}{{municipality="{municipality}",system="{system}"}}'
                changed = changes(failed)
                out.write("".join(f"{labels} {changed.get(t, usual)} {t}.5\n" for t in minutes))
        out.write("# TYPE municipality_system:probe_duration_seconds:p95_1m gauge\n")
        for i, municipality, system in failures:
            labels = (
                f'municipality_system:probe_duration_seconds:p95_1m{{municipality="{municipality}",system="{system}"}}'
            )
            out.write("".join(f"{labels} {_p95(durations, probed(t), i)} {t}.5\n" for t in minutes))
        out.write("# TYPE ALERTS gauge\n")
        for stack in stacks:
            for i, m in enumerate(load_stack(stack).municipalities):
                down_at = _at(first + dt.timedelta(days=i % 28), 10, i % 60)
                labels = (
                    f'ALERTS{{alertname="SlaAvailabilityBurnRate",alertstate="firing",'
                    f'municipality="{m.id}",system="jumin"}}'
                )
                out.write("".join(f"{labels} 1 {t}\n" for t in range(down_at + 60, down_at + OUTAGE + 120, step)))
        out.write("# TYPE municipality:backup_age_seconds:min gauge\n")
        for stack in stacks:
            for m in load_stack(stack).municipalities:
                labels = f'municipality:backup_age_seconds:min{{municipality="{m.id}"}}'
                out.write("".join(f"{labels} {(t - start) % 86400 + 300} {t}\n" for t in range(start, end, 60)))
        for metric, base in (
            ("vm:lgcloud_vm_cpu_usage_vcpus:rate1m", 0.05),
            ("vm:lgcloud_vm_memory_used_bytes:sum", 2e8),
        ):
            out.write(f"# TYPE {metric} gauge\n")
            # The shared VMs (gateway, monitor, …) have the same names in every stack: one series each.
            vms = {}
            for stack in stacks:
                cfg = load_stack(stack)
                ids = municipality_ids(cfg.municipalities)  # metrics name a municipality by its id
                vms.update({vm.name: (vm, ids[vm.municipality]) for vm in plan(cfg).vms})
            for vm, municipality in vms.values():
                labels = f'{metric}{{vm="{vm.name}",site="{vm.site}",role="{vm.role}",municipality="{municipality}"}}'

                out.write(
                    "".join(f"{labels} {base * (1 + (t // 3600) % 5 / 10):g} {t}\n" for t in range(start, end, 60))
                )
        out.write("# EOF\n")
    return planned


def serve(data: Path, tsdb: Path) -> str:
    """Backfill the series into one block and serve them on loopback; the URL once it answers."""
    subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True)
    (tsdb / "prometheus.yml").write_text("global: {}\n")
    # One block for the whole month: promtool reads its input once per block.
    script = (
        f"promtool tsdb create-blocks-from openmetrics --max-block-duration={24 * DAYS + 24}h"
        f" /in/{data.name} /prom/data >/dev/null && exec prometheus --config.file=/prom/prometheus.yml"
        " --storage.tsdb.path=/prom/data"
        f" --storage.tsdb.retention.time=400d --web.listen-address=127.0.0.1:{PORT}"
    )
    subprocess.run(
        [
            "docker", "run", "-d", "--name", CONTAINER, "--network", "host", "-v", f"{data.parent}:/in:ro",
            "-v", f"{tsdb}:/prom", "--entrypoint", "sh", "lgcloud/vm:latest", "-c", script,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{PORT}"
    deadline = time.monotonic() + 1800
    while True:
        try:
            ready = f"{url}/api/v1/query?query=count(last_over_time(probe_success%5B1h%5D))"
            with urllib.request.urlopen(ready, timeout=5) as answer:
                if json.load(answer)["data"]["result"]:
                    return url
        except OSError:
            pass
        if time.monotonic() > deadline or not subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", CONTAINER], capture_output=True, text=True
        ).stdout.startswith("true"):
            logs = subprocess.run(["docker", "logs", CONTAINER], capture_output=True, text=True)
            raise SystemExit(f"backfilled Prometheus not ready:\n{logs.stderr[-2000:]}")
        time.sleep(3)


def prepare_state(stack: str, copy: Path, start: int, planned: list[tuple]) -> None:
    """The bench stack's own state: in service from the first backfilled minute, its planned work."""
    shutil.rmtree(state_dir(bench_name(stack)), ignore_errors=True)
    shutil.copy(stack_file(stack), copy)
    name = bench_name(stack)
    record_in_service(name, [m.id for m in load_stack(stack).municipalities], at=start)
    for a, b, municipality in planned:
        window = start_maintenance(name, "OS patching (benchmark)", [municipality], at=a)
        end_maintenance(name, window.id, at=b)


def measure(stack: str, copy: Path, url: str, month: str, runs: int, keep: bool) -> dict:
    count = len(load_stack(stack).municipalities)
    sla = [run(LGCLOUD, "sla", "--file", str(copy), "--prometheus", url, "--json", check=False) for _ in range(runs)]
    shown = subprocess.run(
        [LGCLOUD, "sla", "--file", str(copy), "--prometheus", url, "--json"], capture_output=True, text=True
    )
    document = json.loads(shown.stdout)
    out = Path(tempfile.mkdtemp(prefix=f"lgcloud-slm-{stack}-"))
    reports = [
        run(LGCLOUD, "report", "sla", "--file", str(copy), "--prometheus", url, "--month", month, "--out", str(out))
        for _ in range(runs)
    ]
    pdfs = sorted(out.glob("*.pdf"))
    incidents = sum(len(json.loads(p.with_suffix(".json").read_text())["incidents"]) for p in pdfs)
    if not keep:
        shutil.rmtree(out)
    return {
        "municipalities": count,
        "sla_s": statistics.median(r.seconds for r in sla),
        "sla_rss_mb": max(r.max_rss_mb for r in sla),
        "sla_exit_codes": sorted({r.returncode for r in sla}),
        "sla_incidents_30d": len(document["incidents"]),
        "report_s": statistics.median(r.seconds for r in reports),
        "report_rss_mb": max(r.max_rss_mb for r in reports),
        "report_pdfs": len(pdfs),
        "report_incidents": incidents,
        "reports": str(out) if keep else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stacks", default="dev,scale", help="stacks whose municipalities are backfilled")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command (the median is shown)")
    parser.add_argument("--step", type=int, default=5, help="seconds between backfilled probes (the lab: 5)")
    parser.add_argument("--keep", action="store_true", help="keep the Prometheus, its data and the reports")
    args = parser.parse_args(argv)
    stacks = args.stacks.split(",")
    now = int(time.time()) - 120
    this_month = dt.datetime.fromtimestamp(now, JST).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (this_month - dt.timedelta(days=1)).strftime("%Y-%m")
    start = min(now - DAYS * 86400, int((this_month - dt.timedelta(days=31)).timestamp()))
    start -= start % args.step
    work = Path(tempfile.mkdtemp(prefix="lgcloud-slm-bench-", dir="/var/tmp"))
    figures: dict[str, dict] = {}
    try:
        began = time.monotonic()
        planned = backfill(stacks, work / "month.om", start, now, args.step)
        written = time.monotonic() - began
        size = (work / "month.om").stat().st_size / 2**30
        tsdb = work / "tsdb"
        tsdb.mkdir()
        url = serve(work / "month.om", tsdb)
        (work / "month.om").unlink()
        print(f"backfilled {DAYS} days at {args.step} s ({size:.1f} GiB written in {written:.0f} s) in "
              f"{time.monotonic() - began:.0f} s; Prometheus at {url}", file=sys.stderr)  # fmt: skip
        for stack in stacks:
            copy = work / f"Pulumi.{bench_name(stack)}.yaml"
            prepare_state(stack, copy, start, planned[stack])
            figures[stack] = measure(stack, copy, url, last_month, args.runs, args.keep)
    finally:
        if not args.keep:
            subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
            for stack in stacks:
                shutil.rmtree(state_dir(bench_name(stack)), ignore_errors=True)
    rows = []
    for stack, f in figures.items():
        name = f"{stack} ({f['municipalities']} municipalities)"
        rows.append(
            (
                f"{name}: lgcloud sla",
                f"{f['sla_s']:.2f} s ({f['sla_s'] / GOALS['sla']:.2f}x the 2 s goal), {f['sla_rss_mb']:.0f} MiB, "
                f"{f['sla_incidents_30d']} incidents in 30 d",
            )
        )
        rows.append(
            (
                f"{name}: lgcloud report sla",
                f"{f['report_s']:.1f} s ({f['report_s'] / GOALS['report']:.2f}x the 20 s goal), "
                f"{f['report_rss_mb']:.0f} MiB, {f['report_pdfs']} PDFs, {f['report_incidents']} incidents",
            )
        )
    print_table(f"SLM over {DAYS} backfilled days at {args.step} s (report: {last_month}), median of {args.runs}", rows)
    print(f"results: {save('slm', {'step_s': args.step, 'days': DAYS, 'month': last_month, 'stacks': figures})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

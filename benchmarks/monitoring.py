"""Monitoring: its overhead on the lab, `lgcloud sla` evaluation time, and the shared pool's
utilization against dedicated servers under the 住民記録 clerk load.

    .venv/bin/python benchmarks/monitoring.py [--stack dev] [--seconds 30] [--load-seconds 40]

1. Overhead: CPU and memory of every monitoring process (Prometheus, Alertmanager, node, PostgreSQL
   and blackbox exporters inside the VMs, the lgcloud exporter on the controller) over an interval,
   as a share of the whole lab's, read from the host's /proc and the VMs' cgroups.
2. `lgcloud sla` time, end to end (a new process, as an operator runs it), against the lab's
   Prometheus for its 3 municipalities; and, because configuring the 154 VMs of `scale` takes far
   longer than the lab's budget, against a throwaway Prometheus (the golden image's, on loopback
   only) holding one hour of synthetic series, at the lab's 5 s resolution, for the 30
   municipalities of `scale` and, for a like-for-like ratio, for the 3 of `dev`.
3. Utilization under load: registrations from every office terminal, one municipality after the
   other (each office's own busy period), then `lgcloud report utilization` over that period.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import LGCLOUD, print_table, save

from lgcloud.model.config import load_stack
from lgcloud.model.naming import vm_resource
from lgcloud.observe.exporter import cgroup_paths, usage_from_cgroup
from lgcloud.state.directory import state_dir

CLK = os.sysconf("SC_CLK_TCK")
MONITORING = ("prometheus",)  # comm of every monitoring process starts with it (15-char truncated)
BENCH_CONTAINER = "lgcloud-dev-bench-prometheus"
BENCH_PORT = 19090


def _processes(pids: list[int]) -> dict[int, tuple[str, float, int]]:
    """pid -> (comm, CPU seconds so far, resident bytes)."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            # Private memory only: the shared pages of a binary mapped by several VMs count once, in the lab.
            status = Path(f"/proc/{pid}/status").read_text()
            rss = int(next(line for line in status.splitlines() if line.startswith("RssAnon:")).split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            continue
        found[pid] = (comm, (int(fields[11]) + int(fields[12])) / CLK, rss)
    return found


def _lab(stack: str) -> dict[str, tuple[list[int], dict[str, str]]]:
    """Container name -> (its PIDs, its cgroup paths)."""
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=lgcloud.stack={stack}"], capture_output=True, text=True, check=True
    ).stdout.split()
    lab = {}
    for info in json.loads(
        subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
    ):
        paths = cgroup_paths(Path(f"/proc/{info['State']['Pid']}/cgroup").read_text())
        procs = Path("/sys/fs/cgroup/cpuacct", paths.get("cpuacct", "").lstrip("/"), "cgroup.procs")
        if not procs.exists():
            procs = Path("/sys/fs/cgroup", paths.get("unified", "").lstrip("/"), "cgroup.procs")
        lab[info["Name"].lstrip("/")] = ([int(p) for p in procs.read_text().split()], paths)
    return lab


def overhead(stack: str, seconds: float) -> dict:
    lab = _lab(stack)
    exporter = int((state_dir(stack) / "exporter.pid").read_text())
    pids = [p for procs, _ in lab.values() for p in procs] + [exporter]
    before, cg_before = _processes(pids), {n: usage_from_cgroup(p) for n, (_, p) in lab.items()}
    time.sleep(seconds)
    after, cg_after = _processes(pids), {n: usage_from_cgroup(p) for n, (_, p) in lab.items()}
    exporter_host = _processes([exporter]).get(exporter)

    def monitoring(pid: int, comm: str) -> bool:
        return pid == exporter or comm.startswith(MONITORING)

    per_process: dict[str, list[float]] = {}
    for pid, (comm, cpu, rss) in after.items():
        if pid in before and monitoring(pid, comm):
            name = "lgcloud exporter (controller)" if pid == exporter else comm
            entry = per_process.setdefault(name, [0.0, 0.0])
            entry[0] += (cpu - before[pid][1]) / seconds
            entry[1] += rss / 2**20
    lab_cpu = sum(cg_after[n].cpu_seconds - cg_before[n].cpu_seconds for n in cg_after) / seconds
    lab_memory = sum(u.memory_bytes for u in cg_after.values()) / 2**20
    if exporter_host:  # the controller's exporter is part of the lab's cost, though outside the VMs
        lab_cpu += per_process["lgcloud exporter (controller)"][0]
        lab_memory += exporter_host[2] / 2**20
    cpu = sum(v[0] for v in per_process.values())
    memory = sum(v[1] for v in per_process.values())
    monitor_vm = vm_resource(stack, "monitor")
    return {
        "seconds": seconds,
        "lab_vcpus": lab_cpu,
        "lab_memory_mb": lab_memory,
        "monitoring_vcpus": cpu,
        "monitoring_rss_mb": memory,
        "cpu_share": cpu / lab_cpu if lab_cpu else None,
        "memory_share": memory / lab_memory,
        "monitor_vm_memory_mb": cg_after[monitor_vm].memory_bytes / 2**20,
        "per_process": {k: {"vcpus": v[0], "rss_mb": v[1]} for k, v in sorted(per_process.items())},
    }


def _time_evaluate(stack: str, url: str, runs: int) -> float:
    """Median seconds of the PromQL evaluation alone, in-process (no interpreter start-up)."""
    from lgcloud.observe.prometheus import Prometheus
    from lgcloud.observe.sla import evaluate, probed_systems

    cfg, times, prometheus = load_stack(stack), [], Prometheus(url)
    served = probed_systems(prometheus)
    for _ in range(runs):
        started = time.monotonic()
        evaluate(cfg, prometheus, served, "1h")
        times.append(time.monotonic() - started)
    return sorted(times)[len(times) // 2]


def _time_sla(stack: str, runs: int, *extra: str) -> dict:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        result = subprocess.run(
            [LGCLOUD, "sla", "--stack", stack, "--window", "1h", "--json", *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        times.append(time.monotonic() - started)
        if result.returncode == 2 or not result.stdout.strip():
            raise SystemExit(f"lgcloud sla --stack {stack} failed:\n{result.stderr[-2000:]}")
        rows = json.loads(result.stdout)["results"]
    times.sort()
    url = extra[1] if extra else None
    from lgcloud.state.facts import lab_facts

    return {
        "median_s": times[len(times) // 2],
        "min_s": times[0],
        "rows": len(rows),
        "evaluate_s": _time_evaluate(stack, url or lab_facts(stack).prometheus_url, runs),
        "statuses": sorted({r["status"] for r in rows}),
    }


def _synthetic(stacks: list[str], hours: float = 1.0, step: int = 5) -> str:
    """OpenMetrics text: what the lab's Prometheus holds for each municipality of `stacks`, for
    the last `hours`: probe results and durations, the recorded RPO, a drill's RTO."""
    rng = random.Random(5)
    end = int(time.time()) - 60
    start = end - int(hours * 3600)
    lines = []
    families = {
        "probe_success": [],
        "probe_duration_seconds": [],
        "municipality:postgresql_rpo_seconds:max": [],
        "lgcloud_drill_rto_seconds": [],
    }
    for stack in stacks:
        for m in load_stack(stack).municipalities:
            probe = f'job="probe",municipality="{m.id}",system="jumin",stack="{stack}"'
            families["probe_success"].append((probe, lambda: 1 if rng.random() > 0.0005 else 0))
            families["probe_duration_seconds"].append((probe, lambda: round(rng.uniform(0.004, 0.03), 4)))
            families["municipality:postgresql_rpo_seconds:max"].append(
                (f'municipality="{m.id}",stack="{stack}"', lambda: 0)
            )
            families["lgcloud_drill_rto_seconds"].append(
                (f'municipality="{m.id}",scenario="site-loss",stack="{stack}"', lambda: 12)
            )
    for name, series in families.items():
        lines.append(f"# TYPE {name} gauge")
        for labels, value in series:
            for t in range(start, end, step):
                lines.append(f"{name}{{{labels}}} {value()} {t}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def sla_times(stack: str, runs: int) -> dict:
    figures = {
        f"lab Prometheus, {stack} ({len(load_stack(stack).municipalities)} municipalities)": _time_sla(stack, runs)
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.om"
        data.write_text(_synthetic([stack, "scale"]))
        subprocess.run(["docker", "rm", "-f", BENCH_CONTAINER], capture_output=True)
        # Backfill the series into a TSDB, then serve it on loopback only.
        script = (
            "promtool tsdb create-blocks-from openmetrics /in/data.om /prom >/dev/null && "
            "exec prometheus --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/prom "
            "--storage.tsdb.retention.time=30d --web.listen-address=0.0.0.0:9090"
        )
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                BENCH_CONTAINER,
                "-v",
                f"{tmp}:/in:ro",
                "-p",
                f"127.0.0.1:{BENCH_PORT}:9090",
                "--entrypoint",
                "sh",
                "lgcloud/vm:latest",
                "-c",
                f"printf 'global: {{}}\\n' >/etc/prometheus/prometheus.yml; {script}",
            ],
            check=True,
            capture_output=True,
        )
        try:
            url = f"http://127.0.0.1:{BENCH_PORT}"
            deadline = time.monotonic() + 180
            while True:
                try:
                    import urllib.request

                    with urllib.request.urlopen(f"{url}/api/v1/query?query=count(probe_success)", timeout=3) as r:
                        if json.load(r)["data"]["result"]:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    logs = subprocess.run(["docker", "logs", BENCH_CONTAINER], capture_output=True, text=True)
                    raise SystemExit(f"synthetic Prometheus not ready:\n{logs.stderr[-2000:]}")
                time.sleep(2)
            for name in (stack, "scale"):
                count = len(load_stack(name).municipalities)
                figures[f"synthetic 1 h at 5 s, {name} ({count} municipalities)"] = _time_sla(
                    name, runs, "--prometheus", url
                )
        finally:
            subprocess.run(["docker", "rm", "-f", BENCH_CONTAINER], capture_output=True)
    return figures


def clerk_load(stack: str, seconds: float) -> dict:
    """Each office registers residents for `seconds`, one office after the other; then the
    utilization report over the whole period."""
    from jumin_writes import measure  # the signed-in clerk the write benchmark runs

    cfg = load_stack(stack)
    started = time.time()
    batches, failed = 0, []
    for m in cfg.municipalities:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batches += 1
            try:
                measure(stack, m.id, 40, 4)
            except SystemExit as error:  # a batch with a failed request (a timeout on the loaded host): noted
                failed.append(f"{m.id}: {str(error).strip().splitlines()[-1]}")
    window = f"{int(time.time() - started) + 30}s"
    out = Path(tempfile.mkdtemp(prefix="lgcloud-utilization-"))
    subprocess.run(
        [LGCLOUD, "report", "utilization", "--stack", stack, "--window", window, "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads((out / "utilization.json").read_text())
    c = data["consolidation"]
    return {
        "window": window,
        "report": str(out / "utilization.html"),
        "batches": batches,
        "failed_batches": failed,
        "dedicated_vcpus": c["dedicated_total"]["vcpus"],
        "dedicated_cpu_utilisation": c["dedicated_total"]["cpu_utilisation"],
        "dedicated_memory_utilisation": c["dedicated_total"]["memory_utilisation"],
        "shared_vcpus": c["shared"]["server"]["vcpus"],
        "shared_cpu_utilisation": c["shared"]["cpu_utilisation"],
        "shared_memory_utilisation": c["shared"]["memory_utilisation"],
        "per_municipality": [
            {k: d[k] for k in ("municipality", "peak_vcpus", "cpu_utilisation")} | d["server"] for d in c["dedicated"]
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--seconds", type=float, default=30, help="overhead measuring interval")
    parser.add_argument("--runs", type=int, default=5, help="`lgcloud sla` runs per figure")
    parser.add_argument("--load-seconds", type=float, default=40, help="clerk load per office")
    parser.add_argument("--skip", action="append", default=[], choices=["overhead", "sla", "load"])
    args = parser.parse_args(argv)
    result: dict = {}
    rows = []
    if "overhead" not in args.skip:
        o = result["overhead"] = overhead(args.stack, args.seconds)
        rows += [
            (
                "monitoring CPU (share of lab)",
                f"{o['monitoring_vcpus']:.3f} of {o['lab_vcpus']:.3f} vCPU: {100 * o['cpu_share']:.1f} %",
            ),
            (
                "monitoring memory (share of lab)",
                f"{o['monitoring_rss_mb']:.0f} of {o['lab_memory_mb']:.0f} MiB: {100 * o['memory_share']:.1f} %",
            ),
        ]
        rows += [(f"  {name}", f"{v['vcpus']:.3f} vCPU, {v['rss_mb']:.0f} MiB") for name, v in o["per_process"].items()]
    if "sla" not in args.skip:
        s = result["sla"] = sla_times(args.stack, args.runs)
        rows += [
            (
                f"lgcloud sla: {name}",
                f"{v['median_s']:.2f} s (min {v['min_s']:.2f}), PromQL part "
                f"{1000 * v['evaluate_s']:.0f} ms, {v['rows']} rows",
            )
            for name, v in s.items()
        ]
    if "load" not in args.skip:
        u = result["utilization"] = clerk_load(args.stack, args.load_seconds)
        rows += [
            (
                "dedicated servers under clerk load",
                f"{u['dedicated_vcpus']} vCPU, CPU "
                f"{100 * u['dedicated_cpu_utilisation']:.1f} %, memory {100 * u['dedicated_memory_utilisation']:.1f} %",
            ),
            (
                "shared pool under clerk load",
                f"{u['shared_vcpus']} vCPU, CPU "
                f"{100 * u['shared_cpu_utilisation']:.1f} %, memory {100 * u['shared_memory_utilisation']:.1f} %",
            ),
        ]
    print_table("monitoring, SLA and utilization", rows)
    print(f"results: {save('monitoring', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

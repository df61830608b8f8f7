"""`lgcloud up` against `docker compose up` for the same containers and networks (the dev topology).

    /tmp/venv/bin/python benchmarks/up_vs_compose.py [--runs 3] [--noop-runs 5]

lgcloud brings up a throwaway copy of the dev stack named `benchup` on 10.110/16; compose brings
up its twin (project `benchcompose`) on 10.111/16: neither touches `dev` (10.100/16) nor the other.
Every run is cold (nothing of the stack exists; images are built) and is torn down afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import LGCLOUD, print_table, run, save
from compose import compose, compose_command, load, readdress

from lgcloud.model.config import stack_file
from lgcloud.model.topology import plan
from lgcloud.ops.access import wait_for_ssh
from lgcloud.state.keys import ensure_keypair

PROJECT = "benchcompose"
LGCLOUD_OCTET, COMPOSE_OCTET = 110, 111
TARGET_RATIO, TARGET_NOOP_S = 1.3, 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cold runs of each tool; the median counts")
    parser.add_argument("--noop-runs", type=int, default=5, help="no-change `lgcloud up` runs")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="lgcloud-bench-") as tmp:
        # The file name makes the stack name: Pulumi.benchup.yaml is stack `benchup`.
        lg_file = Path(tmp) / "Pulumi.benchup.yaml"
        dev = yaml.safe_load(stack_file("dev").read_text(encoding="utf-8"))
        lg_file.write_text(yaml.safe_dump(readdress(dev, LGCLOUD_OCTET), allow_unicode=True), encoding="utf-8")
        cfg = load(lg_file, COMPOSE_OCTET)
        topology = plan(cfg)
        compose_file = Path(tmp) / "compose.yml"
        compose_file.write_text(
            yaml.safe_dump(compose(topology, cfg.image, ensure_keypair(cfg.stack).public, PROJECT), allow_unicode=True)
        )
        mgmt = {vm.name: vm.addresses["mgmt"] for vm in topology.vms}

        def lgcloud(verb: str) -> list[str]:
            return [LGCLOUD, verb, "--file", str(lg_file)]

        tool = " ".join(compose_command())
        dc = [*tool.split(), "-p", PROJECT, "-f", str(compose_file)]
        lg_cold, dc_up, dc_ssh, noop = [], [], [], []
        try:
            run(*lgcloud("down"), check=False)  # leftovers of an interrupted benchmark
            run(*dc, "down", check=False)
            for i in range(args.runs):
                lg_cold.append(run(*lgcloud("up")).seconds)
                if i == args.runs - 1:
                    noop = [run(*lgcloud("up")).seconds for _ in range(args.noop_runs)]
                run(*lgcloud("down"))

                started = time.monotonic()
                run(*dc, "up", "-d")
                dc_up.append(time.monotonic() - started)
                silent = wait_for_ssh(mgmt)  # what lgcloud up also waits for before it returns
                dc_ssh.append(time.monotonic() - started)
                if silent:
                    raise SystemExit(f"compose containers not answering SSH: {', '.join(silent)}")
                run(*dc, "down")
        finally:
            run(*lgcloud("down"), check=False)
            run(*dc, "down", check=False)

    med = {
        k: statistics.median(v)
        for k, v in {"lgcloud_up": lg_cold, "compose_up": dc_up, "compose_up_ssh": dc_ssh, "lgcloud_noop": noop}.items()
    }
    ratio_ssh = med["lgcloud_up"] / med["compose_up_ssh"]
    ratio_up = med["lgcloud_up"] / med["compose_up"]

    def runs(values: list[float]) -> str:
        return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print_table(
        f"dev topology ({len(topology.vms)} VMs, {len(topology.segments)} segments), "
        f"median of {args.runs} cold runs, peer: {tool}",
        [
            ("lgcloud up (incl. SSH wait)", f"{med['lgcloud_up']:6.2f} s  {runs(lg_cold)}"),
            ("compose up -d", f"{med['compose_up']:6.2f} s  {runs(dc_up)}"),
            ("compose up -d + SSH answers", f"{med['compose_up_ssh']:6.2f} s  {runs(dc_ssh)}"),
            (
                "ratio lgcloud / compose+SSH",
                f"{ratio_ssh:6.2f} ×  target ≤ {TARGET_RATIO}: {verdict(ratio_ssh <= TARGET_RATIO)}",
            ),
            ("ratio lgcloud / compose -d", f"{ratio_up:6.2f} ×"),
            (
                f"lgcloud up, no change (×{len(noop)})",
                f"{med['lgcloud_noop']:6.2f} s  {runs(noop)}  "
                f"target < {TARGET_NOOP_S:g} s: "
                f"{verdict(med['lgcloud_noop'] < TARGET_NOOP_S)}",
            ),
        ],
    )
    path = save(
        "up_vs_compose",
        {
            "vms": len(topology.vms),
            "segments": len(topology.segments),
            "compose": tool,
            "seconds": {"lgcloud_up": lg_cold, "compose_up": dc_up, "compose_up_ssh": dc_ssh, "lgcloud_noop": noop},
            "median": med,
            "ratio_vs_compose_ssh": ratio_ssh,
            "ratio_vs_compose_up": ratio_up,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

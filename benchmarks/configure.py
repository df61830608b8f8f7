"""`lgcloud configure` of the dev topology: first run, no-change run, and Ansible's defaults.

    /tmp/venv/bin/python benchmarks/configure.py

Works on a throwaway copy of the dev stack named `benchcfg` on 10.112/16 (never on `dev`):
1. a cold `up`, then the first configure and a no-change second one with lgcloud's settings, run
   twice: every VM's roles (`--full`), and as an operator's plain `configure` (no VM changed:
   their configured states read and compared, no VM run);
2. the stack made anew, then the first configure with plain ansible-playbook defaults
   (5 forks, the linear strategy without Mitogen, facts gathered implicitly), for the ratio.
The second run should take under a third of the first.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

import yaml
from common import LGCLOUD, print_table, run, save
from compose import readdress

from lgcloud.engine import running_vms
from lgcloud.model.config import parse, read_file, stack_file, stack_name
from lgcloud.ops.configure import configure

OCTET = 112
DEFAULTS = {
    "ANSIBLE_FORKS": "5",
    "ANSIBLE_STRATEGY": "linear",
    "ANSIBLE_PIPELINING": "False",
    "ANSIBLE_GATHERING": "implicit",
    "ANSIBLE_PARAMIKO_PTY": "True",
}


CONTROLLER: list[dict[str, float]] = []  # per configure: the controller's CPU seconds and the load before


def _cpu() -> float:
    """CPU seconds of this process (the state reads' SSH) and its children (ansible-playbook, workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _configure(path: Path, settings: dict[str, str] | None = None, full: bool = True) -> tuple[float, int]:
    cfg = parse(read_file(path), stack_name(path), str(path))
    load = os.getloadavg()[0]
    before = _cpu()
    outcome = configure(cfg, running=running_vms(cfg), settings=settings, full=full)
    CONTROLLER.append({"cpu_s": round(_cpu() - before, 1), "loadavg_before": load})
    if outcome.rc != 0:
        raise SystemExit(f"configure failed; see {outcome.artifacts}")
    return outcome.seconds, sum(r.changed for r in outcome.hosts.values())


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lgcloud-bench-") as tmp:
        path = Path(tmp) / "Pulumi.benchcfg.yaml"
        values = readdress(read_file(stack_file("dev")), OCTET)
        path.write_text(yaml.safe_dump({"config": {f"lgcloud:{k}": v for k, v in values.items()}}, allow_unicode=True))
        try:
            run(LGCLOUD, "up", "--file", str(path))
            first, first_changed = _configure(path)
            second, second_changed = _configure(path)
            skipped, _ = _configure(path, full=False)
            run(LGCLOUD, "down", "--file", str(path))
            run(LGCLOUD, "up", "--file", str(path))
            plain, _ = _configure(path, DEFAULTS)
        finally:
            run(LGCLOUD, "down", "--file", str(path), check=False)

    print_table(
        "lgcloud configure, dev topology (19 VMs)",
        [
            ("first run (lgcloud settings)", f"{first:.1f} s, {first_changed} changes"),
            (
                "second run, nothing to change (--full)",
                f"{second:.1f} s, {second_changed} changes ({second / first:.2f} of the first; target < 0.33)",
            ),
            ("second run, nothing to change, no VM run", f"{skipped:.1f} s ({skipped / first:.2f} of the first)"),
            ("first run, ansible defaults", f"{plain:.1f} s"),
            ("lgcloud settings / defaults", f"{first / plain:.2f}x"),
            (
                "controller CPU (first, second, no VM run, defaults)",
                ", ".join(f"{c['cpu_s']:.0f} s" for c in CONTROLLER),
            ),
            ("load average before each", ", ".join(f"{c['loadavg_before']:.1f}" for c in CONTROLLER)),
        ],
    )
    figures = {
        "first_s": first,
        "second_s": second,
        "unchanged_s": skipped,
        "defaults_first_s": plain,
        "second_changed": second_changed,
        "controller": CONTROLLER,
    }
    print(f"results: {save('configure', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

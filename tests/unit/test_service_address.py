"""The gateway's service-address record (roles/gateway/files/service_address.py) when several
failover runbooks take addresses on the same gateway at once: each address taken stays recorded."""

from __future__ import annotations

import importlib.util
import multiprocessing
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "roles" / "gateway" / "files" / "service_address.py"


def load():
    spec = importlib.util.spec_from_file_location("service_address", TOOL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def take_recorded(record: str, address: str, start) -> None:
    tool = load()
    tool.RECORD = record
    tool.take = lambda address: None  # the interface is the gateway's; the record is what races
    start.wait()
    raise SystemExit(tool.main(["take", address]))


def test_addresses_taken_at_once_are_all_recorded(tmp_path):
    record = str(tmp_path / "lgcloud" / "service-addresses")
    addresses = [f"10.100.{i}.254" for i in range(1, 25)]
    context = multiprocessing.get_context("fork")
    start = context.Event()
    runbooks = [context.Process(target=take_recorded, args=(record, a, start)) for a in addresses]
    for runbook in runbooks:
        runbook.start()
    start.set()
    for runbook in runbooks:
        runbook.join(30)
    assert [r.exitcode for r in runbooks] == [0] * len(addresses)
    assert sorted(Path(record).read_text().split()) == sorted(addresses)


def test_release_strikes_only_its_own_address(tmp_path):
    tool = load()
    tool.RECORD = str(tmp_path / "service-addresses")
    tool.take = tool.release = lambda address: None
    assert tool.main(["take", "10.100.1.254", "10.100.2.254"]) == 0
    assert tool.main(["release", "10.100.1.254"]) == 0
    assert Path(tool.RECORD).read_text() == "10.100.2.254\n"

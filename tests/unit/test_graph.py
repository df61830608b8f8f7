"""`lgcloud graph` draws every VM and segment of the stack."""

from __future__ import annotations

import html

from lgcloud.model.topology import plan
from lgcloud.observe.graph import render


def test_the_picture_shows_every_vm_and_segment(dev, tmp_path):
    svg = html.unescape(render(dev, tmp_path / "topology.svg").read_text(encoding="utf-8"))
    for vm in plan(dev).vms:
        assert f">{vm.name}<" in svg, f"{vm.name} missing from the picture"
    for segment in plan(dev).segments:
        if segment.key != "mgmt":
            assert f">{segment.cidr}<" in svg, f"{segment.key} missing from the picture"
    assert "Ａ市" in svg

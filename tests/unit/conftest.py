"""Run the Pulumi program under mocks that record every registered resource."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import pulumi
import pytest
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from lgcloud.state.keys import KeyPair


@dataclass(frozen=True)
class Registered:
    typ: str
    name: str
    inputs: dict
    provider: str


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Registered] = []

    def new_resource(self, args):
        self.resources.append(Registered(args.typ, args.name, args.inputs, args.provider or ""))
        outputs = dict(args.inputs)
        if args.typ == "docker:index/container:Container":
            outputs["networkDatas"] = [
                {"networkName": n["name"], "ipAddress": n.get("ipv4Address")}
                for n in args.inputs.get("networksAdvanced", [])
            ]
        return f"{args.name}-id", outputs

    def call(self, args):
        return {}, None


def run_program(cfg, keys: KeyPair) -> list[Registered]:
    """The program's resources for `cfg`, its VMs trusting `keys` (never the stack's own key pair:
    one made here would tell a later `lgcloud up` that this checkout made the lab it finds)."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="lgcloud", stack=cfg.stack, preview=False)
    from lgcloud.program import build  # imported after set_mocks, as Pulumi's unit tests must

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(importlib.import_module("lgcloud.program.build"), "ensure_keypair", lambda stack: keys)
        build(cfg)
        _sync_await(wait_for_rpcs())
    return mocks.resources


@pytest.fixture(scope="session")
def resources(dev, tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    keys = KeyPair(directory / "id_ed25519", directory / "id_ed25519.pub")
    keys.public.write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3kIb4XqXP2NeQXBgFIb9aDBLiexGgrHZJmDnDKvlWv lgcloud-dev\n"
    )
    return run_program(dev, keys)


@pytest.fixture(scope="session")
def containers(resources):
    return {
        r.inputs["name"].removeprefix("lgcloud-dev-"): r
        for r in resources
        if r.typ == "docker:index/container:Container"
    }


@pytest.fixture(scope="session")
def networks(resources):
    return {
        r.inputs["name"].removeprefix("lgcloud-dev-"): r for r in resources if r.typ == "docker:index/network:Network"
    }

"""Run the stack's Pulumi program in-process and realise what it registers.

The program is the very file ``pulumi up`` would run (``stacks/__main__.py``). It runs under
the Pulumi SDK's mock monitor, so every resource arrives here with resolved inputs and in
dependency order; independent registrations arrive on parallel threads.
"""

from __future__ import annotations

import asyncio
import json
import runpy
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from docker.errors import DockerException
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks

from ..model.naming import vm_resource
from ..model.schema import StackConfig
from ..paths import PROGRAM
from ..state.failover import fenced_vms
from .realise import Change, EngineError, Realiser
from .translate import CONTAINER, NETWORK, PROVIDER, VOLUME, Unsupported, container_spec, network_spec, volume_spec

__all__ = ["Outcome", "realise_stack", "run_program"]

PARALLELISM = 8  # concurrent Docker API calls; the engine is the bottleneck beyond this


@dataclass(frozen=True)
class Outcome:
    changes: list[Change]
    outputs: dict[str, Any]


def _mocks(realiser: Realiser) -> Mocks:

    endpoints: dict[str, str | None] = {}

    class EngineMocks(Mocks):
        def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
            if not args.custom:
                return "", {}  # components only group their children
            if args.typ == PROVIDER:
                endpoints[f"provider-{args.name}"] = args.inputs.get("host")
                return f"provider-{args.name}", dict(args.inputs)
            endpoint = endpoints.get((args.provider or "").rsplit("::", 1)[-1])
            if args.typ == NETWORK:
                id_, outputs = realiser.network(endpoint, args.name, network_spec(args.name, args.inputs))
            elif args.typ == VOLUME:
                id_, outputs = realiser.volume(endpoint, args.name, volume_spec(args.name, args.inputs))
            elif args.typ == CONTAINER:
                id_, outputs = realiser.container(endpoint, args.name, container_spec(args.name, args.inputs))
            else:
                raise Unsupported(args.typ, args.name, "this resource type")
            return id_, {**args.inputs, **outputs}

        def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            raise Unsupported(args.token, "-", "provider function calls")

    return EngineMocks()


def _config_strings(values: dict[str, Any]) -> dict[str, str]:
    return {f"lgcloud:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def run_program(cfg: StackConfig, values: dict[str, Any], realiser: Realiser, program: Path = PROGRAM) -> Outcome:
    """Run ``stacks/__main__.py`` for `cfg` against `realiser`; prune what it no longer declares."""
    import pulumi
    from pulumi.runtime import config as pulumi_config
    from pulumi.runtime import mocks, settings
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.set_default_executor(ThreadPoolExecutor(PARALLELISM, thread_name_prefix="lgcloud-engine"))
    pulumi_config.set_all_config(_config_strings(values), [])
    mocks.set_mocks(_mocks(realiser), project="lgcloud", stack=cfg.stack, preview=realiser.preview)

    # First Ctrl-C: finish what is in flight, start nothing new; the next up or down completes it.
    def interrupt(signum: int, frame: FrameType | None) -> None:
        realiser.interrupted.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        runpy.run_path(str(program), run_name="__main__")
        _sync_await(wait_for_rpcs())
        root = settings.get_root_resource()
        outputs = _sync_await(pulumi.Output.from_input(root.outputs if root else {}).future()) or {}  # type: ignore[attr-defined]
    except (EngineError, Unsupported):
        raise
    except Exception as exc:
        cause: BaseException = exc
        while (inner := cause.__cause__ or cause.__context__) is not None:
            if isinstance(cause, (EngineError, Unsupported)):
                break
            cause = inner
        if isinstance(cause, (EngineError, Unsupported)):
            raise cause from None
        if isinstance(cause, DockerException):
            raise EngineError(
                f"the Docker Engine refused a request: {cause}; run `lgcloud up` again, "
                "or `lgcloud down` to start clean"
            ) from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if realiser.interrupted.is_set():
        raise EngineError(
            "interrupted; what was in flight finished. Run `lgcloud up` to complete "
            "the stack or `lgcloud down` to remove it"
        )
    realiser.prune()
    return Outcome(realiser.changes, outputs)


def realise_stack(
    cfg: StackConfig,
    values: dict[str, Any],
    on_change: Callable[[Change], None] = lambda change: None,
    preview: bool = False,
    allow_data_loss: bool = False,
) -> Outcome:
    """Make the engines hold what the program declares for `cfg` (what `lgcloud up` does), keeping
    off what a failover fenced, and never replacing a primary in the run that replaces its replica."""
    realiser = Realiser(
        cfg.stack,
        preview=preview,
        on_change=on_change,
        fenced=frozenset(vm_resource(cfg.stack, vm) for vm in fenced_vms(cfg.stack)),
        allow_data_loss=allow_data_loss,
        partners={
            vm_resource(cfg.stack, f"{m.id}-db"): vm_resource(cfg.stack, f"{m.id}-db-replica")
            for m in cfg.municipalities
        },
    )
    return run_program(cfg, values, realiser)

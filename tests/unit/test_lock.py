"""One lock per stack: a second run is told who holds the stack and since when, and changes
nothing; --wait queues behind the holder; a holder that dies releases the stack."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

import pytest

from lgcloud.errors import EXIT_BAD_INPUT
from lgcloud.model.config import stack_file
from lgcloud.state.directory import state_dir
from lgcloud.state.lock import StackBusy, stack_lock

STACK = "locktest"


@pytest.fixture
def stack():
    yield STACK
    shutil.rmtree(state_dir(STACK), ignore_errors=True)


def test_a_second_holder_is_refused_naming_the_first(stack):
    with stack_lock(stack, "up") as holder:
        with pytest.raises(StackBusy) as busy, stack_lock(stack, "configure"):
            pass
    assert busy.value.exit_code == EXIT_BAD_INPUT
    assert f"`lgcloud up` (pid {holder.pid}) since {time.strftime('%H:%M', time.localtime(holder.since))}" in str(
        busy.value
    )
    assert "--wait" in busy.value.hint


def test_a_waiting_run_goes_on_when_the_holder_is_done(stack):
    order: list[str] = []
    with stack_lock(stack, "up"):

        def queued() -> None:
            with stack_lock(stack, "configure", wait=True):
                order.append("configure")

        waiter = threading.Thread(target=queued)
        waiter.start()
        time.sleep(0.3)
        order.append("up done")
    waiter.join(5)
    assert order == ["up done", "configure"]


def test_a_holder_that_dies_releases_the_stack(stack):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from lgcloud.state.lock import stack_lock\nwith stack_lock({stack!r}, 'up'):\n"
            "    print('held', flush=True)\n    import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(10)
    with stack_lock(stack, "down"):
        pass


def test_the_cli_refuses_a_held_stack_with_exit_2_and_changes_nothing(stack, tmp_path):
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(stack_file("dev").read_text(encoding="utf-8"), encoding="utf-8")
    with stack_lock(stack, "drill"):
        result = subprocess.run(
            [sys.executable, "-m", "lgcloud.cli", "down", "--file", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stderr
    assert f"stack {stack} is held by `lgcloud drill`" in result.stderr and "Traceback" not in result.stderr

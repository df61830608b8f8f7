"""The record configure skips VMs by: any change of what a run is made from is a new digest, a
VM made anew or stopped is no match, and a record that cannot be read is none (a full run)."""

from __future__ import annotations

import shutil

import pytest

from lgcloud.state.converged import Converged, converged, forget_converged, inputs_digest, record_converged
from lgcloud.state.directory import state_dir

STACK = "convergedtest"


@pytest.fixture
def stack():
    yield STACK
    shutil.rmtree(state_dir(STACK), ignore_errors=True)


@pytest.fixture
def code(tmp_path):
    role = tmp_path / "roles" / "jumin" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yml").write_text("- name: a task\n")
    (tmp_path / "site.yml").write_text("- hosts: all\n")
    return tmp_path


def _digest(code, inventory="all: {}", extravars="{}", settings=None):
    return inputs_digest((inventory, extravars), sorted(code.rglob("*.yml")), settings or {"ANSIBLE_FORKS": "25"})


def test_the_same_inputs_give_the_same_digest(code):
    assert _digest(code) == _digest(code)


def test_a_changed_inventory_secret_file_or_setting_gives_another_digest(code):
    before = _digest(code)
    assert _digest(code, inventory="all: {hosts: {a-city-db: {}}}") != before
    assert _digest(code, extravars='{"jumin_db_password": "changed"}') != before
    assert _digest(code, settings={"ANSIBLE_FORKS": "50"}) != before
    (code / "roles" / "jumin" / "tasks" / "main.yml").write_text("- name: another task\n")
    assert _digest(code) != before


def test_a_new_role_file_gives_another_digest(code):
    before = _digest(code)
    (code / "roles" / "jumin" / "tasks" / "extra.yml").write_text("")
    assert _digest(code) != before


def test_a_vm_made_anew_added_or_stopped_does_not_match():
    record = Converged("inputs", {"a-city-db": "c1", "a-city-app": "c2"}, {"a-city-db": "s1", "a-city-app": "s2"})
    assert record.matches("inputs", {"a-city-db": "c1", "a-city-app": "c2"})
    assert not record.matches("other inputs", {"a-city-db": "c1", "a-city-app": "c2"})
    assert not record.matches("inputs", {"a-city-db": "c3", "a-city-app": "c2"})  # remade
    assert not record.matches("inputs", {"a-city-db": "c1"})  # stopped
    assert not record.matches("inputs", {"a-city-db": "c1", "a-city-app": "c2", "b-town-db": "c4"})  # added


def test_the_record_is_kept_and_forgotten(stack):
    assert converged(stack) is None
    record = Converged("inputs", {"a-city-db": "c1"}, {"a-city-db": "s1"})
    record_converged(stack, record)
    assert converged(stack) == record
    assert (state_dir(stack) / "ansible" / "converged.json").stat().st_mode & 0o777 == 0o600
    forget_converged(stack)
    assert converged(stack) is None
    forget_converged(stack)  # nothing to forget: no error


def test_an_unreadable_record_is_none(stack):
    path = state_dir(stack) / "ansible" / "converged.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"inputs": "x"')
    assert converged(stack) is None
    path.write_text('{"inputs": "x", "states": {}}')
    assert converged(stack) is None

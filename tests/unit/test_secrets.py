"""The stack's passwords: generated once, kept, and never silently replaced under a configured lab."""

from __future__ import annotations

import json
import shutil

import pytest

from lgcloud.errors import EXIT_BAD_INPUT, OperatorError
from lgcloud.state.directory import state_dir
from lgcloud.state.secrets import stack_secrets

STACK = "secretstest"


@pytest.fixture
def directory():
    yield state_dir(STACK)
    shutil.rmtree(state_dir(STACK), ignore_errors=True)


def test_passwords_are_generated_once_and_kept_private(directory):
    first = stack_secrets(STACK)
    assert stack_secrets(STACK) == first
    assert (directory / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert first.postgresql_replication_password != first.jumin_db_password


def test_a_configured_lab_whose_passwords_are_lost_is_refused(directory):
    stack_secrets(STACK)
    (directory / "facts.json").write_text("{}")  # what a configure run leaves
    (directory / "secrets.json").unlink()
    with pytest.raises(OperatorError) as refused:
        stack_secrets(STACK)
    assert refused.value.exit_code == EXIT_BAD_INPUT
    assert "was configured, but" in str(refused.value) and "secrets.json" in str(refused.value)
    assert "put back" in refused.value.hint
    assert not (directory / "secrets.json").exists(), "new passwords were written anyway"


def test_a_secret_added_since_is_made_under_a_configured_lab_and_the_others_kept(directory):
    first = stack_secrets(STACK)
    (directory / "facts.json").write_text("{}")
    path = directory / "secrets.json"
    older = {k: v for k, v in json.loads(path.read_text()).items() if k != "linkage_secret"}
    path.write_text(json.dumps(older))
    again = stack_secrets(STACK)
    assert (again.postgresql_replication_password, again.jumin_db_password) == (
        first.postgresql_replication_password,
        first.jumin_db_password,
    )
    assert again.linkage_secret and stack_secrets(STACK) == again


def test_each_body_has_its_own_linkage_secrets(directory):
    extravars = stack_secrets(STACK).as_extravars(["012025", "013315"])
    keys, passwords = extravars["linkage_request_keys"], extravars["chukan_db_passwords"]
    assert len({keys["012025"], keys["013315"], passwords["012025"], passwords["013315"]}) == 4
    assert "linkage_secret" not in extravars, "the secret every body's key derives from reached the VMs"

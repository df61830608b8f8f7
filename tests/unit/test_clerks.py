"""The clerks lgcloud provides: kept once in the state directory, given to the databases hashed, and
signed in with a one-time code no earlier sign-in used."""

from __future__ import annotations

import json
import shutil
import stat

import pyotp
import pytest

from lgcloud.cli import main
from lgcloud.ops import clerks as signing
from lgcloud.state import clerks
from lgcloud.state.clerks import ADMINISTRATOR, DRILL_CLERK, first_clerks, hash_password, verify_password
from lgcloud.state.directory import state_dir

STACK = "clerkstest"


@pytest.fixture(autouse=True)
def clean():
    yield
    shutil.rmtree(state_dir(STACK), ignore_errors=True)


def test_a_password_is_kept_as_an_scrypt_hash_that_only_it_matches():
    stored = hash_password("窓口の合言葉")
    method, n, r, p, _salt, _key = stored.split("$")
    assert (method, n, r, p) == ("scrypt", "16384", "8", "1")
    assert verify_password(stored, "窓口の合言葉")
    assert not verify_password(stored, "窓口の合言葉 ")
    assert hash_password("same") != hash_password("same")  # salted
    assert not verify_password("md5$abc", "abc") and not verify_password("", "")


def test_each_municipality_gets_a_first_administrator_and_a_drill_clerk_once():
    accounts = first_clerks(STACK, ["a-city", "b-town"])
    path = state_dir(STACK) / "clerks.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for municipality in ("a-city", "b-town"):
        provided = [(a.clerk_id, a.role) for a in accounts[municipality]]
        assert provided == [(ADMINISTRATOR, "管理者"), (DRILL_CLERK, "窓口")]
    assert accounts["a-city"][0].password != accounts["b-town"][0].password
    # Asked again, and with one more municipality: the same accounts, the new one added.
    again = first_clerks(STACK, ["a-city", "b-town", "c-village"])
    assert again["a-city"] == accounts["a-city"] and again["b-town"] == accounts["b-town"]
    assert set(json.loads(path.read_text())) == {"a-city", "b-town", "c-village"}


def test_the_database_is_given_the_hash_and_the_second_factor_never_the_password():
    account = first_clerks(STACK, ["a-city"])["a-city"][0]
    given = account.as_first_clerk()
    assert account.password not in json.dumps(given, ensure_ascii=False)
    assert verify_password(given["password"], account.password)
    assert given["totp_secret"] == account.totp_secret
    assert account.code(account.step()) == pyotp.TOTP(account.totp_secret).now()


def test_sign_ins_in_a_row_use_a_time_step_each_and_wait_when_both_are_used(monkeypatch):
    clock = {"now": 1_800_000_000.0}
    monkeypatch.setattr(clerks.time, "time", lambda: clock["now"])
    monkeypatch.setattr(signing.time, "sleep", lambda seconds: clock.update(now=clock["now"] + seconds))
    account = first_clerks(STACK, ["a-city"])["a-city"][1]
    now = account.step()
    codes = [signing._fresh_step(STACK, "a-city", account) for _ in range(3)]
    # This step, the next (which the app accepts for a clock that drifts), then the one after, once
    # the clock has reached the next step: no code is offered twice.
    assert codes == [account.code(now), account.code(now + 1), account.code(now + 2)]
    assert account.step() == now + 1
    # Another account of another municipality is not held up by these.
    other = first_clerks(STACK, ["b-town"])["b-town"][1]
    assert signing._fresh_step(STACK, "b-town", other) == other.code(other.step())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["clerk", "show"], "needs --municipality"),
        (["clerk", "reset"], "needs --municipality"),
        (["clerk", "show", "--municipality", "z-town"], "no municipality 'z-town'"),
        (["clerk", "show", "--municipality", "a-city", "--clerk", "bob"], "'bob' is not a clerk lgcloud provides"),
    ],
)
def test_bad_clerk_arguments_are_refused_naming_what_is_wrong(capsys, args, message):
    assert main([*args, "--stack", "dev"]) == 2
    assert message in capsys.readouterr().err

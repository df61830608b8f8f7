"""Clerks sign in to 住民記録 with two factors, as a clerk at the office terminal would: the first
管理者 lgcloud created, the accounts that 管理者 creates, lockout, sessions that end, roles, and the
sign-ins and アクセス記録 a 管理者 reads."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from zoneinfo import ZoneInfo

import pyotp
import pytest

from lgcloud.state.clerks import ADMINISTRATOR, DRILL_CLERK

from .conftest import STACK
from .offices import call, session

pytestmark = pytest.mark.live

NOBODY = "/api/residents/00000000-0000-4000-8000-000000000000"  # a ref no resident has
TODAY = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date()
MOVE_IN = {
    "name": "署名 花子",
    "kana": "ショメイ ハナコ",
    "birth_date": "1991-05-02",
    "sex": "女",
    "address": "本町二丁目2番2号",
    "event": "move-in",
    "event_date": (TODAY - dt.timedelta(days=3)).isoformat(),
}


@pytest.fixture(scope="module")
def a_city(dev):
    return dev.municipalities[0]


@pytest.fixture(scope="module")
def terminal(configured, vm, a_city):
    """Ａ市's office terminal, where its clerks sit."""
    return vm(f"{a_city.id}-terminal")


@pytest.fixture(scope="module")
def admin(terminal, a_city):
    """The first 管理者's session, signed in with the password and code lgcloud keeps."""
    return session(a_city.id, ADMINISTRATOR)


class NewClerk:
    """An account a 管理者 created through the API, with what the 管理者 was shown once."""

    def __init__(self, office, municipality: str, admin: str, role: str = "窓口") -> None:
        self.office, self.municipality = office, municipality
        self.clerk_id = f"t-{uuid.uuid4().hex[:10]}"
        created = call(
            office,
            municipality,
            "POST",
            "/api/clerks",
            {"clerk_id": self.clerk_id, "name": "試験 職員", "role": role},
            token=admin,
        )
        assert created.status == 201, created.body
        shown = created.json()["clerk"]
        self.password, self.totp = shown["password"], pyotp.TOTP(shown["totp_secret"])
        assert shown["totp_uri"].startswith("otpauth://totp/")
        self.used = 0  # the last time step a sign-in was accepted with

    def code(self) -> str:
        """A code of a step no accepted sign-in used (the app takes a code once, and the next step's too)."""
        return self.totp.generate_otp(max(int(time.time()) // 30, self.used + 1))

    def sign_in(self, password: str | None = None, code: str | None = None):
        step = max(int(time.time()) // 30, self.used + 1)
        body = {"clerk_id": self.clerk_id, "password": password or self.password, "code": code or self.code()}
        answer = call(self.office, self.municipality, "POST", "/api/session", body, token=None)
        if answer.status == 201:
            self.used = step
        return answer

    def token(self) -> str:
        """A session ready for work: the initial password changed at the first sign-in."""
        answer = self.sign_in()
        assert answer.status == 201, answer.body
        session = answer.json()["session"]
        if session["must_change_password"]:
            self.change_password(session["token"], f"自分の合言葉-{uuid.uuid4().hex[:8]}")
        return session["token"]

    def change_password(self, token: str, new: str):
        body = {"current": self.password, "new": new}
        answer = call(self.office, self.municipality, "POST", "/api/session/password", body, token=token)
        if answer.status == 200:
            self.password = new
        return answer


def sign_ins(terminal, municipality: str, admin: str, clerk_id: str) -> list[str]:
    answer = call(terminal, municipality, "GET", f"/api/sign-ins?clerk={clerk_id}", token=admin)
    assert answer.status == 200, answer.body
    return [row["outcome"] for row in reversed(answer.json()["sign_ins"])]


def test_the_first_administrator_sees_the_accounts_lgcloud_created(terminal, a_city, admin):
    answer = call(terminal, a_city.id, "GET", "/api/clerks", token=admin)
    assert answer.status == 200, answer.body
    roles = {c["clerk_id"]: (c["role"], c["created_by"]) for c in answer.json()["clerks"]}
    assert roles[ADMINISTRATOR] == ("管理者", "lgcloud") and roles[DRILL_CLERK] == ("窓口", "lgcloud")
    assert all("password" not in c and "totp_secret" not in c for c in answer.json()["clerks"])


def test_a_new_clerk_signs_in_with_both_factors_and_is_named_in_the_access_record(terminal, a_city, admin):
    clerk = NewClerk(terminal, a_city.id, admin)
    token = clerk.token()
    created = call(terminal, a_city.id, "POST", "/api/residents", MOVE_IN, token=token)
    assert created.status == 201, created.body
    ref = created.json()["resident"]["ref"]
    records = call(terminal, a_city.id, "GET", f"/api/access-records?resident={ref}", token=admin)
    assert records.status == 200, records.body
    (row,) = records.json()["access_records"]
    assert (row["clerk"], row["action"], row["office"]) == (clerk.clerk_id, "register", str(a_city.terminal))
    assert sign_ins(terminal, a_city.id, admin, clerk.clerk_id) == ["created", "signed-in", "password-changed"]


def test_an_initial_password_serves_to_choose_the_clerks_own_and_nothing_else(terminal, a_city, admin):
    clerk = NewClerk(terminal, a_city.id, admin)
    first = clerk.sign_in()
    assert first.status == 201 and first.json()["session"]["must_change_password"] is True, first.body
    token = first.json()["session"]["token"]
    other = clerk.sign_in().json()["session"]["token"]  # a second session with the handed-over password
    blocked = call(terminal, a_city.id, "POST", "/api/residents", MOVE_IN, token=token)
    assert (blocked.status, blocked.json()["field"]) == (403, "password"), blocked.body
    initial = clerk.password
    assert clerk.change_password(token, "short").json()["field"] == "new"
    assert clerk.change_password(token, initial).json()["field"] == "new"  # the same again
    wrong = call(terminal, a_city.id, "POST", "/api/session/password", {"current": "x", "new": "y" * 12}, token=token)
    assert (wrong.status, wrong.json()["field"]) == (403, "current"), wrong.body
    assert clerk.change_password(token, "新しい合言葉-" + uuid.uuid4().hex[:8]).status == 200
    assert call(terminal, a_city.id, "POST", "/api/residents", MOVE_IN, token=token).status == 201
    ended = call(terminal, a_city.id, "POST", "/api/residents", MOVE_IN, token=other)
    assert (ended.status, ended.json()["field"]) == (401, "session"), "a session of the old password lives on"
    assert clerk.sign_in(password=initial).status == 401  # the initial password is gone
    outcomes = sign_ins(terminal, a_city.id, admin, clerk.clerk_id)
    assert outcomes == ["created", "signed-in", "signed-in", "password-changed", "wrong-password"]


def test_without_a_session_nothing_is_shown_or_written(terminal, vm, a_city):
    count = "chpst -u postgres psql -XAtq -d jumin -c 'SELECT count(*) FROM residents'"
    before = vm(f"{a_city.id}-db").check_output(count)
    for method, path, body in (
        ("POST", "/api/residents", MOVE_IN),
        ("GET", "/api/residents?name=%E8%A8%93%E7%B7%B4", None),
        ("GET", NOBODY, None),
        ("GET", "/api/clerks", None),
        ("GET", "/api/access-records", None),
    ):
        for token in (None, "forged-token", "x" * 43):
            answer = call(terminal, a_city.id, method, path, body, token=token)
            assert (answer.status, answer.json()["field"]) == (401, "session"), (method, path, token, answer.body)
            assert "resident" not in answer.json() and "residents" not in answer.json()
    assert vm(f"{a_city.id}-db").check_output(count) == before


def test_each_role_does_its_own_work_only(terminal, a_city, admin):
    as_clerk = call(terminal, a_city.id, "GET", "/api/clerks")  # the drill clerk, 窓口
    assert (as_clerk.status, as_clerk.json()["field"]) == (403, "role"), as_clerk.body
    records = call(terminal, a_city.id, "GET", "/api/access-records")
    assert records.status == 403, records.body
    as_admin = call(terminal, a_city.id, "POST", "/api/residents", MOVE_IN, token=admin)
    assert (as_admin.status, as_admin.json()["field"]) == (403, "role"), as_admin.body
    lookup = call(terminal, a_city.id, "GET", "/api/residents?name=%E8%A8%93%E7%B7%B4", token=admin)
    assert lookup.status == 403 and "residents" not in lookup.json(), lookup.body


def test_five_wrong_passwords_lock_the_account_until_a_administrator_unlocks_it(terminal, a_city, admin):
    clerk = NewClerk(terminal, a_city.id, admin)
    for attempt in range(5):
        wrong = clerk.sign_in(password=f"wrong-{attempt}")
        assert wrong.status == (423 if attempt == 4 else 401), (attempt, wrong.body)
    # Locked: the right password and a fresh code are refused too, and say so.
    locked = clerk.sign_in()
    assert (locked.status, locked.json()["field"]) == (423, "clerk_id"), locked.body
    assert "locked" in locked.json()["error"]
    outcomes = sign_ins(terminal, a_city.id, admin, clerk.clerk_id)
    assert outcomes == ["created", *["wrong-password"] * 4, "wrong-password, locked-out", "locked"]
    unlocked = call(terminal, a_city.id, "POST", f"/api/clerks/{clerk.clerk_id}/unlock", {}, token=admin)
    assert unlocked.status == 200 and unlocked.json()["clerk"]["locked_until"] is None, unlocked.body
    assert clerk.sign_in().status == 201
    assert sign_ins(terminal, a_city.id, admin, clerk.clerk_id)[-2:] == ["unlocked", "signed-in"]


def test_a_one_time_code_signs_in_once_and_a_wrong_one_not_at_all(terminal, a_city, admin):
    clerk = NewClerk(terminal, a_city.id, admin)
    code = clerk.code()
    assert clerk.sign_in(code=code).status == 201
    replayed = clerk.sign_in(code=code)
    assert replayed.status == 401 and "session" not in replayed.json(), replayed.body
    wrong = f"{(int(clerk.code()) + 1) % 1_000_000:06d}"
    assert clerk.sign_in(code=wrong).status == 401
    assert sign_ins(terminal, a_city.id, admin, clerk.clerk_id)[1:] == ["signed-in", "wrong-code", "wrong-code"]


def test_a_session_ends_at_sign_out_and_after_idle_time(terminal, vm, a_city, admin):
    clerk = NewClerk(terminal, a_city.id, admin)
    token = clerk.token()
    assert call(terminal, a_city.id, "GET", "/api/session", token=token).json()["session"]["clerk_id"] == clerk.clerk_id
    assert call(terminal, a_city.id, "DELETE", "/api/session", token=token).status == 200
    after = call(terminal, a_city.id, "GET", NOBODY, token=token)
    assert after.status == 401, after.body
    # Idle for longer than the idle limit (30 minutes): the clock of the session moved back as the superuser.
    idle = clerk.token()
    vm(f"{a_city.id}-db").check_output(
        "chpst -u postgres psql -XAtq -d jumin -c "
        f"\"UPDATE staff.sessions SET seen_at = now() - interval '31 minutes' WHERE clerk_id = '{clerk.clerk_id}'\""
    )
    expired = call(terminal, a_city.id, "GET", NOBODY, token=idle)
    assert (expired.status, expired.json()["field"]) == (401, "session"), expired.body


def test_a_disabled_clerk_is_signed_out_and_cannot_sign_in(terminal, a_city, admin):
    clerk = NewClerk(terminal, a_city.id, admin)
    token = clerk.token()
    assert call(terminal, a_city.id, "POST", f"/api/clerks/{clerk.clerk_id}/disable", {}, token=admin).status == 200
    assert call(terminal, a_city.id, "GET", NOBODY, token=token).status == 401
    assert clerk.sign_in().status == 401
    assert sign_ins(terminal, a_city.id, admin, clerk.clerk_id)[-2:] == ["disabled", "disabled"]


@pytest.mark.municipalities(pairs=True)
def test_no_credential_of_one_municipality_opens_another(vm, lab, configured, office, other):
    """Ａ市's terminal, certificate and clerk's session ask for Ｂ町's service (at Ａ市's own service
    address, the one its terminal reaches): refused; Ａ市's session at Ｂ町's own terminal: unknown there."""
    here, own_address = vm(f"{office.id}-terminal"), lab.service_addresses[office.id]
    mine = session(office.id)
    asked = call(here, other.id, "GET", NOBODY, via=own_address, token=mine)
    assert asked.status == 403, asked.body
    attempt = {"clerk_id": DRILL_CLERK, "password": "x", "code": "000000"}
    signing_in = call(here, other.id, "POST", "/api/session", attempt, via=own_address, token=None)
    assert signing_in.status == 403, signing_in.body
    at_theirs = call(vm(f"{other.id}-terminal"), other.id, "GET", NOBODY, token=mine)
    assert (at_theirs.status, at_theirs.json()["field"]) == (401, "session"), at_theirs.body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"clerk_id": ["kunren01"], "password": "x", "code": "123456"}, "clerk_id"),
        ({"clerk_id": "KUNREN01", "password": "x", "code": "123456"}, "clerk_id"),
        ({"clerk_id": "kunren01", "password": 1234, "code": "123456"}, "password"),
        ({"clerk_id": "kunren01", "password": "x", "code": "１２３４５６"}, "code"),
        ({"clerk_id": "kunren01", "password": "x", "code": "123456", "role": "管理者"}, "role"),
        ({"clerk_id": "kunren01\u0000", "password": "x", "code": "123456"}, "clerk_id"),
    ],
    ids=["list", "upper-case", "number", "full-width-digits", "unknown-field", "nul"],
)
def test_a_malformed_sign_in_names_its_field(terminal, a_city, body, field):
    answer = call(terminal, a_city.id, "POST", "/api/session", body, token=None)
    assert (answer.status, answer.json()["field"]) == (400, field), answer.body


def _lgcloud(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", *args, "--stack", STACK], capture_output=True, text=True, timeout=120
    )


def test_lgcloud_resets_a_clerk_who_is_locked_out(terminal, a_city, admin):
    """The break-glass: a new password and second factor set as postgres, sessions ended, recorded;
    the clerk then chooses a password of their own."""
    clerk = NewClerk(terminal, a_city.id, admin)
    token = clerk.token()
    for attempt in range(5):
        clerk.sign_in(password=f"wrong-{attempt}")
    result = _lgcloud("clerk", "reset", "--municipality", a_city.code, "--clerk", clerk.clerk_id, "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert call(terminal, a_city.id, "GET", NOBODY, token=token).status == 401  # its session ended
    clerk.password, clerk.totp, clerk.used = shown["password"], pyotp.parse_uri(shown["totp_uri"]), 0
    fresh = clerk.token()  # unlocked; the reset password serves to choose a new one first
    assert call(terminal, a_city.id, "GET", NOBODY, token=fresh).status == 404
    assert "reset" in sign_ins(terminal, a_city.id, admin, clerk.clerk_id)


def test_lgcloud_resets_a_provided_clerk_and_keeps_the_new_secrets(configured, vm, dev):
    village = dev.municipalities[-1]
    before = session(village.id)
    result = _lgcloud("clerk", "reset", "--municipality", village.id, "--clerk", DRILL_CLERK)
    assert result.returncode == 0, result.stderr
    here = vm(f"{village.id}-terminal")
    assert call(here, village.id, "GET", NOBODY, token=before).status == 401
    assert call(here, village.id, "GET", NOBODY, token=session(village.id, fresh=True)).status == 404


@pytest.mark.parametrize(("clerk", "message"), [("nobody-here", "has no clerk"), ("Bad_ID", "is not a 職員ID")])
def test_a_reset_of_no_clerk_is_refused_and_changes_nothing(configured, a_city, clerk, message):
    result = _lgcloud("clerk", "reset", "--municipality", a_city.id, "--clerk", clerk)
    assert result.returncode == 2 and message in result.stderr, result.stderr

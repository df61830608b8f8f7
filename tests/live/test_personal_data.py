"""特定個人情報 stays in the databases: no 個人番号 and no 住民票コード in any log of the lab.

The registrations below take the paths that once logged personal data (a refused duplicate
個人番号, a refused row, a name lookup, a resident read by its code); then every 個人番号 and
住民票コード in every municipality's database is looked for in every container's log and in every
VM's /var/log.
"""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
from urllib.parse import quote

import pytest

from lgcloud.model.codes import my_number_check_digit
from lgcloud.model.naming import vm_resource
from lgcloud.state.clerks import first_clerks

from .conftest import STACK
from .offices import call, session

pytestmark = pytest.mark.live

IDENTIFIERS = re.compile(r"(?<![0-9])[0-9]{11,12}(?![0-9])")


def _resident(my_number: str | None = None) -> dict:
    body = {
        "name": f"記録 {secrets.token_hex(3)}",
        "kana": "キロク",
        "birth_date": "1985-05-05",
        "sex": "女",
        "address": "本町4-4",
        "event": "move-in",
        "event_date": "2026-11-02",
        "previous_address": "別市4-4",
    }
    return body | ({"my_number": my_number} if my_number else {})


@pytest.fixture(scope="module")
def exercised(configured, vm, dev):
    """Each municipality's registry used the ways that once put personal data into a log."""
    for m in dev.municipalities:
        terminal = vm(f"{m.id}-terminal")
        first = f"{secrets.randbelow(10**11):011d}"
        number = f"{first}{my_number_check_digit(first)}"
        body = _resident(number)
        assert call(terminal, m.id, "POST", "/api/residents", body).status == 201
        assert call(terminal, m.id, "POST", "/api/residents", _resident(number)).status == 409  # the duplicate
        assert call(terminal, m.id, "POST", "/api/residents", _resident() | {"sex": "M"}).status == 400
        assert call(terminal, m.id, "GET", f"/api/residents?name={quote(body['name'])}").status == 200
        code = call(terminal, m.id, "GET", f"/api/residents?name={quote(body['name'])}").json()["residents"][0]
        assert call(terminal, m.id, "GET", f"/api/residents/{code['ref']}").status == 200


def _written(vm, municipality: str) -> set[str]:
    out = vm(f"{municipality}-db").check_output(
        "chpst -u postgres psql -XAtq -d jumin -c 'SELECT resident_code, my_number FROM residents'"
    )
    return {value for line in out.splitlines() for value in line.split("|")}


def test_no_log_of_the_lab_holds_a_my_number_or_a_resident_code(exercised, vm, dev, lab):
    written: set[str] = set()
    for m in dev.municipalities:
        written |= _written(vm, m.id)
    assert len(written) > 2 * len(dev.municipalities)
    found: dict[str, int] = {}
    for machine in lab.vms:
        logs = subprocess.run(
            ["docker", "logs", vm_resource(STACK, machine.name)], capture_output=True, text=True, errors="replace"
        )
        # Runs of 11 or 12 digits only: binary logs (wtmp) are read as text, and nothing else travels.
        files = vm(machine.name).run("grep -rhoaE '[0-9]{11,12}' /var/log 2>/dev/null || true").stdout
        for source, text in ((f"{machine.name} container log", logs.stdout + logs.stderr), (machine.name, files)):
            hits = {value for value in IDENTIFIERS.findall(text) if value in written}
            if hits:
                found[source] = len(hits)
    assert not found, f"personal identifiers in logs (how many, not which): {found}"


def test_no_log_of_the_lab_holds_a_clerks_password_or_session(exercised, vm, dev, lab):
    """The credentials that travel to the registries (passwords of the clerks lgcloud provides, the
    drill clerks' session tokens) are never written to a log."""
    secrets_sent = set()
    for m in dev.municipalities:
        secrets_sent.add(session(m.id))
        secrets_sent |= {account.password for account in first_clerks(STACK, [m.id])[m.id]}
    found = []
    for machine in lab.vms:
        logs = subprocess.run(
            ["docker", "logs", vm_resource(STACK, machine.name)], capture_output=True, text=True, errors="replace"
        )
        if any(secret in logs.stdout + logs.stderr for secret in secrets_sent):
            found.append(f"{machine.name} container log")
        # The patterns through printf, the shell's own: no process of the VM shows them.
        listed = " ".join(shlex.quote(s) for s in secrets_sent)
        grep = vm(machine.name).run(f"printf '%s\\n' {listed} | grep -rlaF -f - /var/log")
        if grep.stdout.strip():
            found.append(f"{machine.name}: {grep.stdout.split()}")
    assert not found, f"credentials in logs: {found}"

"""HTTPS from an office terminal, as a clerk's browser or script would send it: curl on the
terminal, which presents the office's certificate (root's ~/.curlrc, written by the terminal role),
signed in as the municipality's drill clerk (窓口) unless told otherwise."""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass

from lgcloud.model.config import load_stack
from lgcloud.ops.clerks import sign_in
from lgcloud.ops.lab import Lab
from lgcloud.state.clerks import DRILL_CLERK

__all__ = ["AS_CLERK", "Response", "call", "register", "session"]

STACK = "dev"
AS_CLERK = object()  # call()'s default: the drill clerk's session, signed in once per test run
_sessions: dict[tuple[str, str], str] = {}


def session(municipality: str, clerk_id: str = DRILL_CLERK, fresh: bool = False) -> str:
    """A session token of a provided clerk (kept for the test run; `fresh` signs in again)."""
    if fresh or (municipality, clerk_id) not in _sessions:
        with Lab(load_stack(STACK)) as lab:
            _sessions[(municipality, clerk_id)] = sign_in(lab, municipality, clerk_id).token
    return _sessions[(municipality, clerk_id)]


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def call(
    host,
    municipality: str,
    method: str,
    path: str,
    body: dict | bytes | None = None,
    via: str | None = None,
    token: str | None | object = AS_CLERK,
    system: str = "jumin",
) -> Response:
    """One HTTPS request with curl on `host` to <system>.<municipality>.lgwan.test (through `via` if
    given), with the session `token` (the drill clerk's by default; None: no session).

    The body travels base64-encoded over SSH and the response comes back the same way, so every
    byte (4-byte UTF-8 included) is what curl sent and received. The token reaches curl in a file
    (printf is the shell's own: no process shows it).
    """
    as_clerk = token is AS_CLERK
    name = f"{system}.{municipality}.lgwan.test"
    response = _curl(host, name, method, path, body, via, session(municipality) if as_clerk else token)
    if as_clerk and response.status == 401 and b'"session"' in response.body:
        # The kept session ended (a drill rebuilt the database it was a row of): sign in again, once.
        response = _curl(host, name, method, path, body, via, session(municipality, fresh=True))
    return response


def _curl(host, name: str, method: str, path: str, body, via: str | None, token) -> Response:
    raw = json.dumps(body, ensure_ascii=False).encode() if isinstance(body, dict) else body
    resolve = f"--resolve {name}:443:{via} " if via else ""
    send = f"printf %s {base64.b64encode(raw).decode()} | base64 -d | " if raw is not None else ""
    data = "-H 'Content-Type: application/json' --data-binary @- " if raw is not None else ""
    header = f'printf "Authorization: Bearer %s\\n" {shlex.quote(token)} > "$hdr"; ' if token else ""
    result = host.run(
        f'out=$(mktemp); hdr=$(mktemp); {header}{send}curl -sS --max-time 20 -o "$out" '
        f"-w '%{{http_code}} %{{content_type}}' -H @\"$hdr\" "
        f'-X {method} {resolve}{data}\'https://{name}{path}\'; echo; base64 -w0 "$out"; rm -f "$out" "$hdr"'
    )
    assert result.rc == 0, f"curl on the terminal failed: {result.stderr}"
    head, _, encoded = result.stdout.partition("\n")
    status, _, content_type = head.strip().partition(" ")
    return Response(int(status), content_type, base64.b64decode(encoded.strip()))


def register(vm, municipality: str, name: str, kana: str = "トウロク") -> str:
    """A resident born today-ish, registered from the municipality's terminal as its clerk would;
    the 住民票コード (`vm`: the live conftest's host factory)."""
    resident = {
        "name": name,
        "kana": kana,
        "birth_date": "2026-11-01",
        "sex": "女",
        "address": "本町3-3",
        "event": "birth",
        "event_date": "2026-11-01",
    }
    answer = call(vm(f"{municipality}-terminal"), municipality, "POST", "/api/residents", resident)
    assert answer.status == 201, answer.text
    return answer.json()["resident"]["resident_code"]

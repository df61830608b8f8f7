"""HTTPS from an office terminal, as a clerk's browser or script would send it: curl on the
terminal, which presents the office's certificate (root's ~/.curlrc, written by the terminal role)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

__all__ = ["Response", "call"]


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
    host, municipality: str, method: str, path: str, body: dict | bytes | None = None, via: str | None = None
) -> Response:
    """One HTTPS request with curl on `host` to jumin.<municipality>.lgwan.test (through `via` if given).

    The body travels base64-encoded over SSH and the response comes back the same way, so every
    byte (4-byte UTF-8 included) is what curl sent and received.
    """
    name = f"jumin.{municipality}.lgwan.test"
    raw = json.dumps(body, ensure_ascii=False).encode() if isinstance(body, dict) else body
    resolve = f"--resolve {name}:443:{via} " if via else ""
    send = f"printf %s {base64.b64encode(raw).decode()} | base64 -d | " if raw is not None else ""
    data = "-H 'Content-Type: application/json' --data-binary @- " if raw is not None else ""
    result = host.run(
        f"out=$(mktemp); {send}curl -sS --max-time 20 -o \"$out\" -w '%{{http_code}} %{{content_type}}' "
        f'-X {method} {resolve}{data}\'https://{name}{path}\'; echo; base64 -w0 "$out"; rm -f "$out"'
    )
    assert result.rc == 0, f"curl on the terminal failed: {result.stderr}"
    head, _, encoded = result.stdout.partition("\n")
    status, _, content_type = head.strip().partition(" ")
    return Response(int(status), content_type, base64.b64decode(encoded.strip()))

"""What an operator sees when something they can fix goes wrong: one message, a hint, the exit
code README lists, and never a traceback. Prometheus and the engine are asked on loopback ports
where nothing, or something broken, answers."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading

import pytest
import yaml

from lgcloud.model.config import stack_file


def lgcloud(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lgcloud.cli", *args], capture_output=True, text=True, timeout=120)


def assert_operator_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"


@pytest.fixture
def refusing_prometheus():
    """An HTTP server on loopback that answers every query with 400, as Prometheus does a bad one."""

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # lgcloud asks by POST: its queries name many spans of time
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b'{"status":"error","error":"parse error"}')

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize("verb", [("sla",), ("report", "utilization")])
def test_a_prometheus_that_does_not_answer_is_exit_3(verb, tmp_path):
    result = lgcloud(*verb, "--prometheus", "http://127.0.0.1:1", *(("--out", str(tmp_path)) if len(verb) > 1 else ()))
    assert_operator_error(result, 3, "Prometheus at http://127.0.0.1:1 does not answer", "make up")


def test_a_prometheus_that_refuses_the_query_is_exit_3(refusing_prometheus):
    assert_operator_error(lgcloud("sla", "--prometheus", refusing_prometheus), 3, "refused", "HTTP 400")


def test_an_engine_that_does_not_answer_is_exit_1(tmp_path):
    document = yaml.safe_load(stack_file("dev").read_text(encoding="utf-8"))
    for site in document["config"]["lgcloud:sites"].values():
        site["endpoint"] = "tcp://127.0.0.1:1"
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    assert_operator_error(
        lgcloud("status", "--file", str(path)), 1, "no Docker Engine answers at tcp://127.0.0.1:1", "make host"
    )


def test_a_bad_argument_is_exit_2():
    assert_operator_error(lgcloud("sla", "--window", "forever"), 2, "--window")
    assert_operator_error(lgcloud("sla", "--municipality", "z-town"), 2, "unknown municipality z-town")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("issue", "--municipality", "a-city"), ("needs --resident and --pin and --out",)),
        (("revoke",), ("needs --municipality and --resident",)),
        (("issue", "--municipality", "x-town", "--resident", "r"), ("no municipality 'x-town'", "a-city (012025)")),
        (("issue", "--municipality", "a-city", "--resident", "r", "--pin", "12", "--out", "c"), ("four digits",)),
    ],
    ids=["issue-without-flags", "revoke-without-flags", "unknown-municipality", "short-pin"],
)
def test_a_card_verb_with_bad_arguments_is_exit_2_before_the_lab_is_asked(args, fragments, tmp_path):
    result = lgcloud("card", *args)
    assert_operator_error(result, 2, *fragments)


def test_a_card_is_never_written_over_an_existing_file(tmp_path):
    kept = tmp_path / "card.p12"
    kept.write_bytes(b"a resident's card")
    args = ("--municipality", "a-city", "--resident", "77fbd04b-ccb1-4095-b325-b685da4d64cc", "--pin", "1234")
    assert_operator_error(lgcloud("card", "issue", *args, "--out", str(kept)), 2, "exists", "never overwritten")
    assert kept.read_bytes() == b"a resident's card"


def test_a_card_that_does_not_open_is_exit_2_naming_what_is_wrong(tmp_path):
    assert_operator_error(lgcloud("card", "open", "--pin", "1234"), 2, "needs --card")
    missing = tmp_path / "none.p12"
    assert_operator_error(lgcloud("card", "open", "--card", str(missing), "--pin", "1234"), 2, "is not a card file")
    garbage = tmp_path / "garbage.p12"
    garbage.write_bytes(b"not a card")
    done = lgcloud("card", "open", "--card", str(garbage), "--pin", "1234")
    assert_operator_error(done, 2, "the PIN does not open", "the municipality issues a new one")
    assert not garbage.with_suffix(".key").exists()

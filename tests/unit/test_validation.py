"""`lgcloud validate`: every kind of bad config is refused with its key path, exit code 2."""

from __future__ import annotations

import copy

import pytest
import yaml

from lgcloud.cli import main
from lgcloud.model.config import stack_file


@pytest.fixture(scope="module")
def dev_document():
    return yaml.safe_load(stack_file("dev").read_text(encoding="utf-8"))


def validate(tmp_path, document, capsys) -> tuple[int, str]:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    code = main(["validate", "--file", str(path), "--offline"])
    return code, capsys.readouterr().err


def set_key(document: dict, path: str, value) -> dict:
    """Return a copy of `document` with `value` at `path` ("lgcloud:municipalities.0.code")."""
    document = copy.deepcopy(document)
    key, *rest = path.split(".")
    node = document["config"]
    for part in [key, *rest][:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = [key, *rest][-1]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return document


BAD = {
    "wrong check digit": (
        "lgcloud:municipalities.0.code",
        "012026",
        ["lgcloud:municipalities[0].code", "'012026'", "check digit", "takes 5"],
    ),
    "code not six digits": ("lgcloud:municipalities.0.code", "1234", ["municipalities[0].code", "six digits"]),
    "duplicate code": ("lgcloud:municipalities.1.code", "012025", ["municipalities[1].code", "duplicate code"]),
    "duplicate name": ("lgcloud:municipalities.2.name", "Ａ市", ["municipalities[2].name", "duplicate name"]),
    "duplicate id": ("lgcloud:municipalities.2.id", "a-city", ["municipalities[2].id", "duplicate id"]),
    "malformed cidr": ("lgcloud:segments.lgwan", "10.100.1.0/33", ["lgcloud:segments.lgwan", "10.100.1.0/33"]),
    "host bits in cidr": ("lgcloud:segments.lgwan", "10.100.1.7/24", ["lgcloud:segments.lgwan", "host bits"]),
    "overlapping cidrs": (
        "lgcloud:segments.ipvpn",
        "10.100.1.128/25",
        ["lgcloud:segments.ipvpn", "overlaps lgcloud:segments.lgwan"],
    ),
    "overlap with a municipality": (
        "lgcloud:municipalities.1.segments.backup",
        "10.100.16.0/23",
        ["municipalities[1].segments.backup", "overlaps"],
    ),
    "address outside its segment": (
        "lgcloud:municipalities.0.terminal",
        "10.100.9.9",
        ["municipalities[0].terminal", "10.100.9.9", "outside its access segment lgwan"],
    ),
    "reserved address": ("lgcloud:municipalities.0.terminal", "10.100.1.1", ["municipalities[0].terminal", "reserved"]),
    "address taken": ("lgcloud:municipalities.0.terminal", "10.100.1.2", ["10.100.1.2", "already used by gateway"]),
    "terminal on a service address": (
        "lgcloud:municipalities.0.terminal",
        "10.100.1.253",
        ["municipalities[0].terminal", "b-town's service address"],
    ),
    "beyond capacity": (
        "lgcloud:sites.backup.capacity.vcpus",
        1,
        ["lgcloud:sites.backup.capacity.vcpus", "allocated 5"],
    ),
    "unknown site": (
        "lgcloud:municipalities.0.segments.osaka",
        "10.100.30.0/24",
        ["municipalities[0].segments", "unknown site 'osaka'"],
    ),
    "unknown site in sites": (
        "lgcloud:sites.osaka",
        {"capacity": {"vcpus": 1, "memory_mb": 512}},
        ["lgcloud:sites", "unknown site 'osaka'"],
    ),
    "unknown segment": ("lgcloud:segments.lgwn", "10.100.40.0/24", ["lgcloud:segments.lgwn", "unknown key"]),
    "unknown access segment": (
        "lgcloud:municipalities.0.access",
        "internet",
        ["municipalities[0].access", "'lgwan' or 'ipvpn'"],
    ),
    "unknown business system": (
        "lgcloud:municipalities.0.systems",
        ["jumin", "kaigo"],
        ["municipalities[0].systems", "unknown business system 'kaigo'"],
    ),
    "missing backup site": ("lgcloud:sites.backup", KeyError, ["lgcloud:sites", "backup site"]),
    "typo in a top key": ("lgcloud:municipalites", [], ["lgcloud:municipalites", "unknown key"]),
    "typo in a nested key": ("lgcloud:municipalities.0.acess", "lgwan", ["municipalities[0].acess", "unknown key"]),
    "records kept less than the law's seven years": (
        "lgcloud:linkage",
        {"record_retention_years": 6},
        ["lgcloud:linkage.record_retention_years", "greater than or equal to 7"],
    ),
    "backups more often than hourly": (
        "lgcloud:backup",
        {"interval": "30m"},
        ["lgcloud:backup.interval", "at most hourly"],
    ),
    "backup interval not a duration": (
        "lgcloud:backup",
        {"interval": "daily"},
        ["lgcloud:backup.interval", "not a duration"],
    ),
    "scrapes too far apart for the one-minute SLA windows": (
        "lgcloud:monitoring",
        {"scrape_interval": "1m"},
        ["lgcloud:monitoring.scrape_interval", "between every 1s and 30s"],
    ),
    "no backup generation kept": ("lgcloud:backup", {"generations": 0}, ["lgcloud:backup.generations", "greater than"]),
    "typo in a backup key": ("lgcloud:backup", {"generation": 7}, ["lgcloud:backup.generation", "unknown key"]),
    "newline in a name": (
        "lgcloud:municipalities.0.name",
        "Ａ市\nbackend x",
        ["lgcloud:municipalities[0].name", "U+000A is not allowed in a name"],
    ),
    "quote in a name": ("lgcloud:municipalities.0.name", 'Ａ市"', ["municipalities[0].name", "'\"' is not allowed"]),
    "name with a trailing space": ("lgcloud:municipalities.0.name", "Ａ市 ", ["municipalities[0].name", "ends with"]),
    "newline in an id": ("lgcloud:municipalities.0.id", "a-city\n", ["lgcloud:municipalities[0].id", "pattern"]),
    "full-width digits in a code": (
        "lgcloud:municipalities.0.code",
        "０１２０２５",
        ["lgcloud:municipalities[0].code", "six digits"],
    ),
    "image with a space": ("lgcloud:image", "lgcloud/vm:latest --privileged", ["lgcloud:image", "pattern"]),
    "negative allocation": (
        "lgcloud:allocations",
        {"app": {"vcpus": -1, "memory_mb": 512}},
        ["lgcloud:allocations.app.vcpus", "greater than 0"],
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_config_is_refused_with_its_key_path(tmp_path, capsys, dev_document, case):
    path, value, expected = BAD[case]
    code, err = validate(tmp_path, set_key(dev_document, path, value), capsys)
    assert code == 2, f"{case}: exit code {code}\n{err}"
    for fragment in expected:
        assert fragment in err, f"{case}: {fragment!r} not in message:\n{err}"


def test_the_shipped_stacks_are_valid(tmp_path, capsys):
    for stack in ("dev", "scale"):
        assert main(["validate", "--stack", stack, "--offline"]) == 0, capsys.readouterr().err


def test_a_file_that_is_not_yaml_is_refused(tmp_path, capsys):
    path = tmp_path / "Pulumi.broken.yaml"
    path.write_text("config: [unclosed\n", encoding="utf-8")
    assert main(["validate", "--file", str(path), "--offline"]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_a_missing_file_is_refused(tmp_path, capsys):
    assert main(["validate", "--file", str(tmp_path / "Pulumi.none.yaml"), "--offline"]) == 2
    assert "no such stack config file" in capsys.readouterr().err


def test_every_problem_is_reported_at_once(tmp_path, capsys, dev_document):
    document = set_key(dev_document, "lgcloud:municipalities.0.code", "012026")
    document = set_key(document, "lgcloud:segments.lgwn", "10.100.40.0/24")
    code, err = validate(tmp_path, document, capsys)
    assert code == 2 and "municipalities[0].code" in err and "segments.lgwn" in err, err

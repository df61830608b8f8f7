"""lgcloud_files, the roles' one module run for their files: run as Ansible runs it, on paths of a tmp dir."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "library" / "lgcloud_files.py"
OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


@pytest.fixture
def root(tmp_path) -> Path:
    """Where the module makes its paths (the arguments file stays beside it, out of the way)."""
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def run(tmp_path):
    """Run the module in a subprocess with its arguments in a JSON file, as Ansible does; its JSON result."""

    def run_module(entries: list[dict], *, check: bool = False, diff: bool = False) -> dict:
        args = {"entries": entries, "_ansible_check_mode": check, "_ansible_diff": diff}
        args_file = tmp_path / "args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        # sys.executable: the venv's Python, where ansible.module_utils imports.
        done = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, timeout=60)
        assert done.stdout.strip(), f"no result from the module: {done.stderr}"
        result = json.loads(done.stdout)
        assert (done.returncode != 0) == bool(result.get("failed")), f"rc {done.returncode}: {result}"
        return result

    return run_module


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# Check mode


def test_check_mode_reports_a_new_file_without_creating_it(root, run):
    path = root / "new.conf"
    result = run([{"path": str(path), "content": "a\n", "mode": "0644"}], check=True)
    assert result["changed"] is True, result
    assert result["changed_paths"] == [str(path)], result
    assert not path.exists(), f"{path} was created in check mode"


def test_check_mode_leaves_a_changed_file_as_it_was(root, run):
    path = root / "app.conf"
    path.write_text("old\n")
    path.chmod(0o600)
    result = run([{"path": str(path), "content": "new\n", "mode": "0644"}], check=True)
    assert result["changed_paths"] == [str(path)], result
    assert path.read_text() == "old\n", f"{path} was written in check mode"
    assert mode(path) == 0o600, f"{path}: mode {oct(mode(path))} changed in check mode"


def test_check_mode_creates_no_directory_link_or_line(root, run):
    hosts = root / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    entries = [
        {"path": str(root / "sv"), "state": "directory", "mode": "0755"},
        {"path": str(root / "service"), "state": "link", "src": str(root / "sv")},
        {"path": str(hosts), "state": "line", "regexp": r"\sjumin$", "line": "10.0.0.1 jumin"},
    ]
    result = run(entries, check=True)
    assert result["changed_paths"] == [entry["path"] for entry in entries], result
    assert not (root / "sv").exists(), f"{root / 'sv'} was created in check mode"
    assert not os.path.lexists(root / "service"), f"{root / 'service'} was created in check mode"
    assert hosts.read_text() == "127.0.0.1 localhost\n", f"{hosts} was edited in check mode"


# Diff mode


def test_diff_mode_returns_before_and_after_of_a_changed_file(root, run):
    path = root / "app.conf"
    path.write_text("port = 1\n")
    result = run([{"path": str(path), "content": "port = 2\n"}], diff=True)
    assert result["diff"] == [
        {"before_header": str(path), "after_header": str(path), "before": "port = 1\n", "after": "port = 2\n"}
    ], result


def test_diff_mode_shows_a_new_file_as_empty_before(root, run):
    path = root / "new.conf"
    result = run([{"path": str(path), "content": "a\n"}], diff=True)
    assert [(d["before"], d["after"]) for d in result["diff"]] == [("", "a\n")], result


def test_no_diff_without_diff_mode(root, run):
    path = root / "app.conf"
    result = run([{"path": str(path), "content": "a\n"}])
    assert "diff" not in result, f"{path}: a diff without diff mode: {result}"


def test_no_diff_for_a_file_that_does_not_change(root, run):
    path = root / "app.conf"
    path.write_text("a\n")
    result = run([{"path": str(path), "content": "a\n"}], diff=True)
    assert "diff" not in result, f"{path} is unchanged but has a diff: {result}"


# Validation


def test_failed_validation_leaves_the_original_file_and_fails_naming_the_path(root, run):
    path = root / "haproxy.cfg"
    path.write_text("good\n")
    result = run([{"path": str(path), "content": "bad\n", "validate": "grep -q ^good$ %s"}])
    assert result["failed"] is True, result
    assert str(path) in result["msg"] and "validation failed" in result["msg"], result
    assert path.read_text() == "good\n", f"{path} was replaced by a content that failed validation"


def test_failed_validation_leaves_no_temporary_file(root, run):
    path = root / "haproxy.cfg"
    path.write_text("good\n")
    run([{"path": str(path), "content": "bad\n", "validate": "/bin/sh -c 'exit 1' %s"}])
    assert sorted(p.name for p in root.iterdir()) == ["haproxy.cfg"], f"left beside {path}"


def test_passed_validation_installs_the_content(root, run):
    path = root / "haproxy.cfg"
    path.write_text("old\n")
    result = run([{"path": str(path), "content": "good\n", "validate": "grep -q ^good$ %s"}])
    assert result["changed_paths"] == [str(path)], result
    assert path.read_text() == "good\n", f"{path} does not have the validated content"


def test_validate_without_the_file_placeholder_is_refused(root, run):
    path = root / "haproxy.cfg"
    result = run([{"path": str(path), "content": "good\n", "validate": "true"}])
    assert result["failed"] is True and str(path) in result["msg"] and "%s" in result["msg"], result
    assert not path.exists(), f"{path} was written without validation"


# changed_paths


def test_changed_paths_lists_exactly_the_paths_that_changed(root, run):
    same, other = root / "same.conf", root / "other.conf"
    same.write_text("a\n")
    same.chmod(0o644)
    created = root / "created.conf"
    other.write_text("old\n")
    result = run(
        [
            {"path": str(same), "content": "a\n", "mode": "0644"},
            {"path": str(created), "content": "b\n"},
            {"path": str(other), "content": "new\n"},
        ]
    )
    assert result["changed"] is True, result
    assert result["changed_paths"] == [str(created), str(other)], result


def test_a_second_run_with_the_same_entries_changes_nothing(root, run):
    hosts = root / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    entries = [
        {"path": str(root / "sv"), "state": "directory", "mode": "0755"},
        {"path": str(root / "sv" / "run"), "content": "#!/bin/sh\n", "mode": "0755", "owner": OWNER, "group": GROUP},
        {"path": str(root / "service"), "state": "link", "src": str(root / "sv")},
        {"path": str(hosts), "state": "line", "regexp": r"\sjumin$", "line": "10.0.0.1 jumin"},
    ]
    first = run(entries)
    assert first["changed_paths"] == [entry["path"] for entry in entries], first
    second = run(entries)
    assert second["changed"] is False, second
    assert second["changed_paths"] == [], second


# Each state


def test_file_is_written_with_its_content_mode_and_owner(root, run):
    path = root / "pgpass"
    run([{"path": str(path), "content": "secret\n", "mode": "0600", "owner": OWNER, "group": GROUP}])
    assert path.read_text() == "secret\n", f"{path}: {path.read_text()!r}"
    assert mode(path) == 0o600, f"{path}: mode {oct(mode(path))}"
    assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid()), f"{path}: owner"


def test_new_file_without_a_mode_is_0644(root, run):
    path = root / "timezone"
    run([{"path": str(path), "content": "Asia/Tokyo\n"}])
    assert mode(path) == 0o644, f"{path}: mode {oct(mode(path))}"


def test_rewritten_file_without_a_mode_keeps_its_mode(root, run):
    path = root / "run"
    path.write_text("old\n")
    path.chmod(0o750)
    run([{"path": str(path), "content": "new\n"}])
    assert path.read_text() == "new\n", f"{path}: {path.read_text()!r}"
    assert mode(path) == 0o750, f"{path}: mode {oct(mode(path))}"


def test_file_with_its_content_but_another_mode_gets_its_mode(root, run):
    path = root / "run"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o644)
    result = run([{"path": str(path), "content": "#!/bin/sh\n", "mode": "0755"}])
    assert result["changed_paths"] == [str(path)], result
    assert mode(path) == 0o755, f"{path}: mode {oct(mode(path))}"


def test_file_in_a_missing_directory_creates_the_directory(root, run):
    path = root / "etc" / "lgcloud" / "service-addresses"
    run([{"path": str(path), "content": ""}])
    assert path.read_text() == "", f"{path} was not written"


def test_directory_is_created_with_its_mode(root, run):
    path = root / "sv" / "jumin"
    result = run([{"path": str(path), "state": "directory", "mode": "0750"}])
    assert result["changed_paths"] == [str(path)], result
    assert path.is_dir(), f"{path} is not a directory"
    assert mode(path) == 0o750, f"{path}: mode {oct(mode(path))}"


def test_existing_directory_gets_its_mode(root, run):
    path = root / "sv"
    path.mkdir(mode=0o700)
    result = run([{"path": str(path), "state": "directory", "mode": "0755"}])
    assert result["changed_paths"] == [str(path)], result
    assert mode(path) == 0o755, f"{path}: mode {oct(mode(path))}"


def test_link_is_created_pointing_to_its_src(root, run):
    path = root / "service"
    run([{"path": str(path), "state": "link", "src": "/etc/sv/jumin"}])
    assert os.readlink(path) == "/etc/sv/jumin", f"{path} -> {os.readlink(path)}"


def test_link_pointing_elsewhere_is_pointed_to_its_src(root, run):
    path = root / "localtime"
    path.symlink_to("/usr/share/zoneinfo/UTC")
    result = run([{"path": str(path), "state": "link", "src": "/usr/share/zoneinfo/Asia/Tokyo"}])
    assert result["changed_paths"] == [str(path)], result
    assert os.readlink(path) == "/usr/share/zoneinfo/Asia/Tokyo", f"{path} -> {os.readlink(path)}"


def test_line_replaces_the_last_matching_line(root, run):
    path = root / "locale.gen"
    path.write_text("# ja_JP.UTF-8 UTF-8\nen_US.UTF-8 UTF-8\n# ja_JP.UTF-8 UTF-8\n")
    run([{"path": str(path), "state": "line", "regexp": "^#? ?ja_JP\\.UTF-8 ", "line": "ja_JP.UTF-8 UTF-8"}])
    assert path.read_text() == "# ja_JP.UTF-8 UTF-8\nen_US.UTF-8 UTF-8\nja_JP.UTF-8 UTF-8\n", (
        f"{path}: {path.read_text()!r}"
    )


def test_line_is_appended_when_no_line_matches(root, run):
    path = root / "hosts"
    path.write_text("127.0.0.1 localhost\n")
    result = run(
        [
            {
                "path": str(path),
                "state": "line",
                "regexp": r"\sjumin\.a-city\.lgwan\.test$",
                "line": "10.100.1.253 jumin.a-city.lgwan.test",
            }
        ]
    )
    assert result["changed_paths"] == [str(path)], result
    assert path.read_text() == "127.0.0.1 localhost\n10.100.1.253 jumin.a-city.lgwan.test\n", (
        f"{path}: {path.read_text()!r}"
    )


def test_line_appended_to_a_file_without_a_final_newline_starts_a_line_of_its_own(root, run):
    path = root / "hosts"
    path.write_text("127.0.0.1 localhost")
    run([{"path": str(path), "state": "line", "regexp": r"\sjumin$", "line": "10.0.0.1 jumin"}])
    assert path.read_text() == "127.0.0.1 localhost\n10.0.0.1 jumin\n", f"{path}: {path.read_text()!r}"


def test_line_in_a_missing_file_fails_naming_the_path(root, run):
    path = root / "hosts"
    result = run([{"path": str(path), "state": "line", "regexp": r"\sjumin$", "line": "10.0.0.1 jumin"}])
    assert result["failed"] is True and str(path) in result["msg"], result
    assert not path.exists(), f"{path} was created"

#!/usr/bin/python3
"""Many files, directories, symlinks and lines of a VM made what they should be, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
module: lgcloud_files
short_description: Ensure many files, directories, symlinks and lines in one module run
description:
  - Compares every entry with the VM and fixes only what differs, like M(ansible.builtin.copy),
    M(ansible.builtin.file) and M(ansible.builtin.lineinfile) would, but in one Python start-up on the VM
    instead of one or two per file (the lab's VMs have a fraction of a CPU each).
  - Reports the paths it changed in C(changed_paths), for handlers to act on only what changed.
  - Supports check mode and diff mode.
options:
  entries:
    description: What each path must be, in order (a directory before the files in it).
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path on the VM.
        type: str
        required: true
      state:
        description:
          - C(file) has exactly O(entries[].content); C(directory) exists; C(link) points to O(entries[].src);
            C(line) is a file whose last line matching O(entries[].regexp) is O(entries[].line) (appended when
            none matches).
        type: str
        choices: [file, directory, link, line]
        default: file
      content:
        description: Content of a C(file).
        type: str
      src:
        description: Target of a C(link).
        type: str
      regexp:
        description: Python regular expression of the line to replace (C(line)).
        type: str
      line:
        description: The line (C(line)).
        type: str
      mode:
        description: Permissions of a C(file) or C(directory), in octal (a new file defaults to 0644).
        type: str
      owner:
        description: Owner of a C(file) or C(directory).
        type: str
      group:
        description: Group of a C(file) or C(directory).
        type: str
      validate:
        description: Command run on a new content before it is put in place, the temporary file as C(%s).
        type: str
      unsafe_writes:
        description:
          - Write the content into the file itself when it cannot be replaced by a rename (a file Docker
            bind-mounts, like C(/etc/hosts)), as O(ansible.builtin.lineinfile#module:unsafe_writes) does.
        type: bool
        default: false
author: lgcloud
"""

RETURN = r"""
changed_paths:
  description: Paths that were (or in check mode would be) changed.
  type: list
  elements: str
  returned: always
"""

import errno
import grp
import os
import pwd
import re
import shlex
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

# In check mode, the id of an owner or group that does not exist yet: no path has it.
UNKNOWN_ID = -2

ENTRY = {
    "path": {"type": "str", "required": True},
    "state": {"type": "str", "default": "file", "choices": ["file", "directory", "link", "line"]},
    "content": {"type": "str"},
    "src": {"type": "str"},
    "regexp": {"type": "str"},
    "line": {"type": "str"},
    "mode": {"type": "str"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "validate": {"type": "str"},
    "unsafe_writes": {"type": "bool", "default": False},
}


class Files:
    def __init__(self, module: AnsibleModule):
        self.module = module
        self.check = module.check_mode
        self.changed: list[str] = []
        self.diffs: list[dict] = []

    def fail(self, path: str, msg: str) -> None:
        self.module.fail_json(msg=f"{path}: {msg}", changed_paths=self.changed)

    def _ids(self, entry: dict) -> tuple[int, int]:
        try:
            uid = pwd.getpwnam(entry["owner"]).pw_uid if entry["owner"] else -1
            gid = grp.getgrnam(entry["group"]).gr_gid if entry["group"] else -1
        except KeyError as exc:
            if self.check:  # an account an earlier task would have created: the path would change
                return UNKNOWN_ID, UNKNOWN_ID
            self.fail(entry["path"], f"no such owner or group: {exc}")
        return uid, gid

    def _attributes(self, entry: dict, path: str, changed: bool) -> bool:
        """Mode and ownership of an existing `path`; True if they were (or would be) changed."""
        st = os.lstat(path)
        uid, gid = self._ids(entry)
        mode = int(entry["mode"], 8) if entry["mode"] else None
        if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
            changed = True
            if not self.check:
                os.chown(path, uid, gid)
        if mode is not None and stat.S_IMODE(st.st_mode) != mode:
            changed = True
            if not self.check:
                os.chmod(path, mode)
        return changed

    def _write(self, entry: dict, path: str, data: bytes, before: os.stat_result | None) -> None:
        """Put `data` in place atomically, with the entry's (or the old file's) mode and owner."""
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o755)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            uid, gid = self._ids(entry)
            if before is not None:
                uid = before.st_uid if uid == -1 else uid
                gid = before.st_gid if gid == -1 else gid
            os.chown(tmp, uid, gid)
            if entry["mode"]:
                mode = int(entry["mode"], 8)
            else:
                mode = stat.S_IMODE(before.st_mode) if before is not None else 0o644
            os.chmod(tmp, mode)
            if entry["validate"]:
                if "%s" not in entry["validate"]:
                    self.fail(path, "validate must name the file to check as %s")
                command = [part.replace("%s", tmp) for part in shlex.split(entry["validate"])]
                rc, out, err = self.module.run_command(command)
                if rc != 0:
                    self.fail(path, f"validation failed ({entry['validate']}): {(err or out).strip()}")
            try:
                os.replace(tmp, path)
            except OSError as exc:
                if not entry["unsafe_writes"] or exc.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM):
                    raise
                # A bind-mounted file cannot be renamed over: write into it (not atomic).
                with open(path, "wb") as handle:
                    handle.write(data)
                if entry["mode"] or entry["owner"] or entry["group"]:
                    self._attributes(entry, path, True)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def _read(self, path: str) -> tuple[bytes | None, os.stat_result | None]:
        if os.path.islink(path) or not os.path.exists(path):
            return None, None
        if not os.path.isfile(path):
            self.fail(path, "exists and is not a regular file")
        with open(path, "rb") as handle:
            return handle.read(), os.stat(path)

    def file(self, entry: dict, path: str) -> bool:
        if entry["content"] is None:
            self.fail(path, "a file needs content")
        wanted = entry["content"].encode("utf-8")
        current, before = self._read(path)
        if current == wanted:
            return self._attributes(entry, path, False)
        self._diff(path, current, wanted)
        if not self.check:
            self._write(entry, path, wanted, before)
        return True

    def line(self, entry: dict, path: str) -> bool:
        if entry["line"] is None or entry["regexp"] is None:
            self.fail(path, "a line needs line and regexp")
        current, before = self._read(path)
        if current is None:
            self.fail(path, "no such file to edit")
        lines = current.decode("utf-8").splitlines(keepends=True)
        pattern = re.compile(entry["regexp"])
        matches = [i for i, text in enumerate(lines) if pattern.search(text.rstrip("\r\n"))]
        wanted_line = entry["line"] + "\n"
        if matches:
            lines[matches[-1]] = wanted_line
        else:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.append(wanted_line)
        wanted = "".join(lines).encode("utf-8")
        if wanted == current:
            return self._attributes(entry, path, False)
        self._diff(path, current, wanted)
        if not self.check:
            self._write(entry, path, wanted, before)
        return True

    def directory(self, entry: dict, path: str) -> bool:
        if os.path.isdir(path) and not os.path.islink(path):
            return self._attributes(entry, path, False)
        if os.path.lexists(path):
            self.fail(path, "exists and is not a directory")
        if not self.check:
            os.makedirs(path)
            self._attributes({**entry, "mode": entry["mode"] or "0755"}, path, True)
        return True

    def link(self, entry: dict, path: str) -> bool:
        if not entry["src"]:
            self.fail(path, "a link needs src")
        if os.path.islink(path) and os.readlink(path) == entry["src"]:
            return False
        if os.path.isdir(path) and not os.path.islink(path):
            self.fail(path, "is a directory, not a link")
        if not self.check:
            tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lgcloud-link")
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(entry["src"], tmp)
            os.replace(tmp, path)
        return True

    def _diff(self, path: str, before: bytes | None, after: bytes) -> None:
        if self.module._diff:
            self.diffs.append(
                {
                    "before_header": path,
                    "after_header": path,
                    "before": (before or b"").decode("utf-8", "replace"),
                    "after": after.decode("utf-8", "replace"),
                }
            )

    def ensure(self, entry: dict) -> None:
        path = entry["path"]
        if not os.path.isabs(path):
            self.fail(path, "the path must be absolute")
        if getattr(self, entry["state"])(entry, path):
            self.changed.append(path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={"entries": {"type": "list", "elements": "dict", "required": True, "options": ENTRY}},
        supports_check_mode=True,
    )
    files = Files(module)
    for entry in module.params["entries"]:
        files.ensure(entry)
    result = {"changed": bool(files.changed), "changed_paths": files.changed}
    if files.diffs:
        result["diff"] = files.diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()

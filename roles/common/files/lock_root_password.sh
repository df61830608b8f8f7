#!/bin/sh
# Ensure root has no usable password (`!*` in /etc/shadow): print `ok`, or `changed` when it had
# to be set (with --check: when it would be, changing nothing). A shell script, not the user
# module: no Python start-up on the VM to find the password already locked.
# Usage: lock_root_password.sh --apply|--check
set -eu
if [ "$(getent shadow root | cut -d: -f2)" = '!*' ]; then
  echo ok
  exit 0
fi
[ "$1" = --check ] || usermod -p '!*' root
echo changed

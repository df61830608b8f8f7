#!/bin/sh
# Ensure Debian packages are installed and a system account exists as it should: print `ok`, or one
# `changed: …` line per thing it had to fix (with --check: would fix, changing nothing). A shell
# script, not the apt, group and user modules: no Python start-up on the VM to find all in place.
# Usage: ensure_system.sh --apply|--check [--packages 'NAME …'] [--account NAME HOME]
# The account is a system user of its own system group, with /usr/sbin/nologin as its shell and HOME
# as its home directory, which is not created.
set -eu
mode=$1
shift
packages='' account='' home=''
while [ $# -gt 0 ]; do
  case "$1" in
    --packages) packages=$2; shift 2 ;;
    --account) account=$2 home=$3; shift 3 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
apply() { [ "$mode" = --check ] || "$@"; }
changed=''

missing=''
for package in $packages; do
  status=$(dpkg-query -W -f '${db:Status-Status}' "$package" 2>/dev/null || true)
  [ "$status" = installed ] || missing="$missing $package"
done
if [ -n "$missing" ]; then
  apply env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2
  echo "changed: installed$missing"
  changed=1
fi

if [ -n "$account" ]; then
  if ! getent group "$account" >/dev/null; then
    apply groupadd --system "$account"
    echo "changed: group $account"
    changed=1
  fi
  if ! entry=$(getent passwd "$account"); then
    apply useradd --system --gid "$account" --shell /usr/sbin/nologin --home-dir "$home" --no-create-home "$account"
    echo "changed: account $account"
    changed=1
  else
    gid=$(getent group "$account" | cut -d: -f3 || true)
    if [ "$(echo "$entry" | cut -d: -f4,6,7)" != "$gid:$home:/usr/sbin/nologin" ]; then
      apply usermod --gid "$account" --home "$home" --shell /usr/sbin/nologin "$account"
      echo "changed: account $account"
      changed=1
    fi
  fi
fi
[ -n "$changed" ] || echo ok

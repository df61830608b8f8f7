#!/bin/sh
# Ensure runit keeps postgresql up, then wait until it accepts connections; print `started` if it
# had to be started, `running` if it already was. Given a replica's DATA_DIR that holds a clone that
# stopped part-way, keep the server down and print `no cluster`: the replica tasks clone it again.
# Usage: ensure_running.sh TIMEOUT SOCKET_DIR PORT [DATA_DIR]
set -eu
timeout=$1 socket_dir=$2 port=$3 replica_data_dir=${4:-}
# A service linked a moment ago has no runsv yet: runsvdir looks every 5 s.
for _ in $(seq "$timeout"); do
  sv status postgresql >/dev/null 2>&1 && break
  sleep 1
done
# The same test as standby_state.sh's half_cloned: no cluster, or a base backup never started
# without its standby.signal (started, it would recover as a primary of its own).
if [ -n "$replica_data_dir" ] && { [ ! -e "$replica_data_dir/PG_VERSION" ] \
  || { [ -e "$replica_data_dir/backup_label" ] && [ ! -e "$replica_data_dir/standby.signal" ]; }; }; then
  sv down postgresql >/dev/null
  echo "no cluster"
  exit 0
fi
case "$(sv status postgresql)" in
  run:*) echo running ;;
  *) sv up postgresql >/dev/null; echo started ;;
esac
for _ in $(seq "$timeout"); do
  pg_isready -q -h "$socket_dir" -p "$port" && exit 0
  sleep 1
done
echo "postgresql does not accept connections after ${timeout} s" >&2
exit 1

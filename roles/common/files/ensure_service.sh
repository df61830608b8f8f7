#!/bin/bash
# Ensure runit keeps a service up, then wait until it listens on HOST:PORT; print `started` if it
# had to be started, `running` if it already was. A shell script, not the shell and wait_for
# modules: no Python start-up on the VM to find the service already running.
# Usage: ensure_service.sh SERVICE TIMEOUT HOST PORT
set -eu
service=$1 timeout=$2 host=$3 port=$4
# A service linked a moment ago has no runsv yet: runsvdir looks every 5 s.
for _ in $(seq "$timeout"); do
  sv status "$service" >/dev/null 2>&1 && break
  sleep 1
done
case "$(sv status "$service")" in
  run:*) echo running ;;
  *) sv up "$service" >/dev/null; echo started ;;
esac
for _ in $(seq "$timeout"); do
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && exit 0
  sleep 1
done
echo "$service does not listen on $host:$port after $timeout s" >&2
exit 1

#!/bin/sh
# Make a cleanly stopped former primary a standby of the new one at SOURCE, without copying data:
# point primary_conninfo and the slot at it, drop the old synchronous standby setting, and leave
# standby.signal. The replication password comes on stdin, never on a command line.
#   follow-primary.sh PG_DATA SOURCE USER SLOT
set -eu
data=$1 source=$2 user=$3 slot=$4
read -r password
conf=$data/postgresql.auto.conf
grep -v -e '^primary_conninfo' -e '^primary_slot_name' -e '^synchronous_standby_names' "$conf" >"$conf.new" || true
printf "primary_conninfo = 'host=%s port=5432 user=%s password=%s application_name=%s'\nprimary_slot_name = '%s'\n" \
    "$source" "$user" "$password" "$slot" "$slot" >>"$conf.new"
chown postgres:postgres "$conf.new"
chmod 0600 "$conf.new"
mv "$conf.new" "$conf"
install -o postgres -g postgres -m 0600 /dev/null "$data/standby.signal"

#!/bin/sh
# Make this VM a fresh streaming standby of the primary at SOURCE, by a base backup taken over the
# replication slot SLOT into the empty PG_DATA (move-aside.sh ran first). The replication password
# comes on stdin, never on a command line.
#   base-backup.sh PG_BIN PG_DATA SOURCE USER SLOT
set -eu
pg_bin=$1 data=$2 source=$3 user=$4 slot=$5
read -r PGPASSWORD
export PGPASSWORD
chpst -u postgres "$pg_bin/pg_basebackup" -h "$source" -U "$user" -d "application_name=$slot" -D "$data" \
    -S "$slot" -R -X stream -c fast -w

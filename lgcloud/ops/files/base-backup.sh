#!/bin/sh
# Make this VM a fresh streaming standby of the primary at SOURCE, by a base backup taken over the
# replication slot SLOT. The data directory it had is not deleted: it is moved aside as
# PG_DATA.replaced-STAMP, and only the KEEP newest such directories are kept. The replication
# password comes on stdin, never on a command line.
#   base-backup.sh PG_BIN PG_DATA SOURCE USER SLOT KEEP STAMP
set -eu
pg_bin=$1 data=$2 source=$3 user=$4 slot=$5 keep=$6 stamp=$7
read -r PGPASSWORD
export PGPASSWORD
if [ -e "$data" ]; then
    mv "$data" "$data.replaced-$stamp"
fi
# Older generations beyond KEEP go (newest first by their stamp).
for old in $(ls -1d "$data".replaced-* 2>/dev/null | sort -r | tail -n +$((keep + 1))); do
    rm -rf "$old"
done
install -d -o postgres -g postgres -m 0700 "$data"
chpst -u postgres "$pg_bin/pg_basebackup" -h "$source" -U "$user" -d "application_name=$slot" -D "$data" \
    -S "$slot" -R -X stream -c fast -w

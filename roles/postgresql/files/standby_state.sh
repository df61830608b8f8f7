#!/bin/sh
# What the replica's data directory is, as JSON: whether it is a standby, its cluster's system
# identifier (empty when there is no cluster), whether it holds data of its own (a database beyond
# the three every new cluster has, or a timeline history: it was promoted once), and whether it is
# a clone that stopped part-way.
# Usage: standby_state.sh DATA_DIR BIN_DIR
set -u
data_dir=$1 bin_dir=$2
standby=false
[ -e "$data_dir/standby.signal" ] && standby=true
identifier=$(LC_ALL=C chpst -u postgres "$bin_dir/pg_controldata" -D "$data_dir" 2>/dev/null \
  | sed -n 's/^Database system identifier: *\([0-9]*\).*/\1/p')
databases=$(find "$data_dir/base" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
histories=$(find "$data_dir/pg_wal" -maxdepth 1 -name '*.history' 2>/dev/null | wc -l)
holds_data=false
if [ "$databases" -gt 3 ] || [ "$histories" -gt 0 ]; then
  holds_data=true
fi
# A clone that stopped part-way (pg_basebackup killed, the VM lost) holds no data of its own, only
# part of its primary's: no cluster yet, or a base backup that never started (its backup_label is
# still there) without the standby.signal that -R writes last. ensure_running.sh tests the same.
half_cloned=false
if [ ! -e "$data_dir/PG_VERSION" ] || { [ -e "$data_dir/backup_label" ] && [ "$standby" = false ]; }; then
  half_cloned=true
  holds_data=false
fi
printf '{"standby": %s, "system_identifier": "%s", "holds_data": %s, "half_cloned": %s}\n' \
  "$standby" "$identifier" "$holds_data" "$half_cloned"

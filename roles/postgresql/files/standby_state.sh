#!/bin/sh
# What the replica's data directory is, as JSON: whether it is a standby, its cluster's system
# identifier (empty when there is no cluster), and whether it holds data of its own: a database
# beyond the three every new cluster has, or a timeline history (it was promoted once).
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
printf '{"standby": %s, "system_identifier": "%s", "holds_data": %s}\n' "$standby" "$identifier" "$holds_data"

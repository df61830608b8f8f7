#!/bin/sh
# What the replica's data directory is, as JSON: whether it is a standby, and its cluster's system
# identifier (empty when there is no cluster).
# Usage: standby_state.sh DATA_DIR BIN_DIR
set -u
data_dir=$1 bin_dir=$2
standby=false
[ -e "$data_dir/standby.signal" ] && standby=true
identifier=$(LC_ALL=C chpst -u postgres "$bin_dir/pg_controldata" -D "$data_dir" 2>/dev/null \
  | sed -n 's/^Database system identifier: *\([0-9]*\).*/\1/p')
printf '{"standby": %s, "system_identifier": "%s"}\n' "$standby" "$identifier"

#!/bin/sh
# What the replica's data directory is, as JSON: whether it is a standby, its cluster's system
# identifier and the timeline of its last checkpoint (empty when there is no cluster).
# Usage: standby_state.sh DATA_DIR BIN_DIR
set -u
data_dir=$1 bin_dir=$2
standby=false
[ -e "$data_dir/standby.signal" ] && standby=true
control=$(LC_ALL=C chpst -u postgres "$bin_dir/pg_controldata" -D "$data_dir" 2>/dev/null)
identifier=$(printf '%s\n' "$control" | sed -n 's/^Database system identifier: *\([0-9]*\).*/\1/p')
timeline=$(printf '%s\n' "$control" | sed -n "s/^Latest checkpoint's TimeLineID: *\([0-9]*\).*/\1/p")
printf '{"standby": %s, "system_identifier": "%s", "timeline": "%s"}\n' "$standby" "$identifier" "$timeline"

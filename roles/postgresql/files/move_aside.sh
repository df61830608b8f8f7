#!/bin/sh
# Move a data directory aside instead of deleting it: DATA_DIR becomes DATA_DIR.replaced-<time>,
# and only the KEEP newest such directories are kept.
# Usage: move_aside.sh DATA_DIR KEEP
set -eu
data_dir=$1 keep=$2
if [ -e "$data_dir" ]; then
    mv "$data_dir" "$data_dir.replaced-$(date -u +%Y%m%dT%H%M%SZ)"
fi
for old in $(ls -1d "$data_dir".replaced-* 2>/dev/null | sort -r | tail -n +$((keep + 1))); do
    rm -rf "$old"
done

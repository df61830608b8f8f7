#!/bin/sh
# Move this VM's data directory aside as PG_DATA.replaced-STAMP (never deleted here), keep only the
# KEEP newest such directories, and leave an empty PG_DATA owned by postgres in its place.
#   move-aside.sh PG_DATA KEEP STAMP
set -eu
data=$1 keep=$2 stamp=$3
if [ -e "$data" ]; then
    mv "$data" "$data.replaced-$stamp"
fi
# Older generations beyond KEEP go (newest first by their stamp).
for old in $(ls -1d "$data".replaced-* 2>/dev/null | sort -r | tail -n +$((keep + 1))); do
    rm -rf "$old"
done
install -d -o postgres -g postgres -m 0700 "$data"

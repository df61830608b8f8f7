#!/bin/sh
# Build the lab's base image: a minimal Debian rootfs from the mirror this
# host's apt already uses (no container registry is needed), imported into
# the Docker Engine as $1 (default lgcloud/base:bookworm).
set -eu
tag="${1:-lgcloud/base:bookworm}"
suite="${LGCLOUD_SUITE:-bookworm}"

mirror="${LGCLOUD_MIRROR:-}"
if [ -z "$mirror" ]; then
    # deb822 sources first, then the one-line format.
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
fi
if [ -z "$mirror" ]; then
    echo "lgcloud: no Debian mirror found in /etc/apt; set LGCLOUD_MIRROR to one and retry" >&2
    exit 1
fi

command -v debootstrap >/dev/null || {
    echo "lgcloud: debootstrap is missing; install it with: apt-get install debootstrap" >&2
    exit 1
}

work=$(mktemp -d /var/tmp/lgcloud-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log" >&2
    echo "lgcloud: debootstrap of $suite from $mirror failed (log above)" >&2
    exit 1
}
# The image's apt uses what the host's apt uses (its security and updates suites included),
# so packages installed during docker build get the same fixes as the host's.
{
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822 stanzas -> one-line entries: every URI with every suite and its components.
        awk -v want="$suite" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && uris != "")
                    for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++)
                        if (suites_a[s] ~ "^" want) print "deb " uris_a[u] " " suites_a[s] " " comps
                types = uris = comps = ""; nu = ns = 0
            }
            /^[[:space:]]*$/ { flush(); next }
            /^Types:/ { types = substr($0, 8) }
            /^URIs:/ { uris = substr($0, 7); nu = split(uris, uris_a, " ") }
            /^Suites:/ { ns = split(substr($0, 9), suites_a, " ") }
            /^Components:/ { comps = substr($0, 13) }
            END { flush() }' "$f"
    done
    grep -hE '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep -v '\[' || true
} | grep " $suite" | sort -u >"$work/rootfs/etc/apt/sources.list"
[ -s "$work/rootfs/etc/apt/sources.list" ] || echo "deb $mirror $suite main" >"$work/rootfs/etc/apt/sources.list"
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" -c . | docker import - "$tag" >/dev/null
echo "lgcloud: imported $tag from $mirror"

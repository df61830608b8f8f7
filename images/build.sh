#!/bin/sh
# Build the lab images incrementally: lgcloud/base:bookworm (debootstrap +
# import) and lgcloud/vm:latest (vm/Dockerfile). The vm image carries the
# label lgcloud.inputs=<hash of its inputs>; an unchanged hash skips the build.
# Env: BASE_IMAGE (default lgcloud/base:bookworm), LGCLOUD_REBUILD=1 forces
# both builds, LGCLOUD_LOGDIR (default /var/tmp/lgcloud-build) keeps the logs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
base_tag=lgcloud/base:bookworm vm_tag=lgcloud/vm:latest
base_image=${BASE_IMAGE:-$base_tag}
rebuild=${LGCLOUD_REBUILD:-0}
logdir=${LGCLOUD_LOGDIR:-/var/tmp/lgcloud-build}
mkdir -p "$logdir"
t0=$(date +%s)

# run IMAGE LOG CMD...: run a build step quietly; on failure name the image and its log.
run() {
    img=$1 log=$2; shift 2; ts=$(date +%s)
    echo "lgcloud: building $img (log: $log)"
    if ! "$@" >"$log" 2>&1; then
        echo "lgcloud: build of $img FAILED after $(($(date +%s) - ts))s; see: less $log" >&2
        exit 1
    fi
    echo "lgcloud: built $img in $(($(date +%s) - ts))s"
}
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null; }

# Base: expensive and rarely changes, so presence alone counts as up to date.
if [ "$base_image" = "$base_tag" ]; then
    if [ "$rebuild" != 1 ] && image_id "$base_tag" >/dev/null; then
        echo "lgcloud: $base_tag up to date"
    else
        run "$base_tag" "$logdir/base.log" sh "$here/base/build-rootfs.sh" "$base_tag"
    fi
elif ! image_id "$base_image" >/dev/null; then
    run "$base_image" "$logdir/base.log" docker pull "$base_image"
fi

# Vm inputs: every file under vm/ (path, exec bit, content), the base name and id.
hash=$(
    cd "$here/vm"
    find . -type f | LC_ALL=C sort | while read -r f; do
        [ -x "$f" ] && x=x || x=-
        echo "$x $(sha256sum <"$f" | cut -d' ' -f1) $f"
    done
    echo "BASE_IMAGE=$base_image $(image_id "$base_image")"
)
hash=$(printf '%s\n' "$hash" | sha256sum | cut -c1-16)
old=$(image_id "$vm_tag" || true)
label=$(docker image inspect -f '{{index .Config.Labels "lgcloud.inputs"}}' "$vm_tag" 2>/dev/null || true)
if [ "$rebuild" != 1 ] && [ "$label" = "$hash" ]; then
    echo "lgcloud: $vm_tag up to date"
else
    nocache=; [ "$rebuild" = 1 ] && nocache=--no-cache   # forced: fetch packages anew
    run "$vm_tag" "$logdir/vm.log" docker build $nocache --build-arg BASE_IMAGE="$base_image" \
        --label lgcloud.inputs="$hash" -t "$vm_tag" "$here/vm"
    # Drop the superseded image unless a container still uses it.
    [ -z "$old" ] || [ "$old" = "$(image_id "$vm_tag")" ] || docker rmi "$old" >/dev/null 2>&1 || true
fi
echo "lgcloud: images ready in $(($(date +%s) - t0))s"

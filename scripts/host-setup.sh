#!/bin/sh
# Make this host able to run the lab: a Docker Engine that answers, and the host tools
# the images and the graph need. Installs Debian's packages only when something is missing.
set -eu

missing=
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
command -v dot >/dev/null 2>&1 || missing="$missing graphviz"
# The operators' ssh (the README's, and the chain walk of `lgcloud linkage verify-records`).
command -v ssh >/dev/null 2>&1 || missing="$missing openssh-client"
# The topology picture labels municipalities in Japanese.
fc-list :lang=ja 2>/dev/null | grep -q . || missing="$missing fonts-ipafont-gothic"
python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$missing python3-venv"
# マイ・ポータル's browser test: Playwright drives Debian's Chromium (it downloads no browser here).
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
# The monthly SLM report's test turns its PDF into pictures to see every page drawn.
command -v pdftoppm >/dev/null 2>&1 || missing="$missing poppler-utils"

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "lgcloud: missing host packages:$missing; install them as root (apt-get install$missing)" >&2
        exit 1
    fi
    echo "lgcloud: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086 # word splitting is the point
    apt-get install -y -qq --no-install-recommends $missing >/var/tmp/lgcloud-apt.log 2>&1 || {
        tail -n 20 /var/tmp/lgcloud-apt.log >&2
        echo "lgcloud: could not install$missing (log above); install them by hand and retry" >&2
        exit 1
    }
fi

# The kernel keeps one ARP table for every network namespace, VMs' included, and by default drops
# new entries past 1024: a 154-VM lab holds about 850 at rest, so the controller's next connection
# failed with "No route to host" ("neighbor table overflow" in the kernel log). Raised, never lowered.
if [ "$(id -u)" = 0 ]; then
    for pair in gc_thresh1=4096 gc_thresh2=8192 gc_thresh3=16384; do
        knob=/proc/sys/net/ipv4/neigh/default/${pair%=*}
        if [ -w "$knob" ] && [ "$(cat "$knob")" -lt "${pair#*=}" ]; then
            echo "${pair#*=}" >"$knob"
        fi
    done
fi

if docker info >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "lgcloud: no Docker Engine answers and only root can start dockerd; start it (or join the docker group)" >&2
    exit 1
fi
echo "lgcloud: starting dockerd (log: /var/log/lgcloud-dockerd.log)"
# No init system is assumed (CI runs in a bare machine): start the daemon ourselves.
if command -v systemctl >/dev/null 2>&1 && systemctl start docker >/dev/null 2>&1; then
    :
else
    nohup dockerd >/var/log/lgcloud-dockerd.log 2>&1 &
fi
i=0
until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge 60 ]; then
        tail -n 20 /var/log/lgcloud-dockerd.log >&2 || true
        echo "lgcloud: dockerd did not answer within 30 s (log above)" >&2
        exit 1
    fi
    sleep 0.5
done
echo "lgcloud: Docker Engine $(docker version -f '{{.Server.Version}}') is up"

#!/usr/bin/python3
"""Hold the service addresses the offices use, on the gateway that serves them.

    lgcloud-service-address hold              # make the held addresses those listed in the file
    lgcloud-service-address take 10.100.1.254 # hold one more (failover), announce it, record it
    lgcloud-service-address release 10.100.1.254
    lgcloud-service-address list

A service address is a /32 on the interface of its access segment (Docker's own addresses carry
the segment's prefix, so a /32 is always one of ours). Taking one announces it with gratuitous
ARP so the offices' ARP caches follow at once instead of after their stale timer. The file
(/etc/lgcloud/service-addresses, one address per line) is what `hold` restores at boot.
Each run holds a lock on the file's directory: failover runbooks of several municipalities
take addresses on the same gateway at once, and each must add to the record, not overwrite it.
"""

import contextlib
import fcntl
import ipaddress
import os
import socket
import struct
import subprocess
import sys

RECORD = "/etc/lgcloud/service-addresses"


def interfaces() -> list[tuple[str, ipaddress.IPv4Interface]]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        found.append((fields[1], ipaddress.IPv4Interface(fields[3])))
    return found


def held(found: list[tuple[str, ipaddress.IPv4Interface]]) -> dict[str, str]:
    return {str(a.ip): name for name, a in found if a.network.prefixlen == 32}


def device_for(address: str, found: list[tuple[str, ipaddress.IPv4Interface]]) -> str:
    ip = ipaddress.IPv4Address(address)
    for name, a in found:
        if a.network.prefixlen < 32 and ip in a.network:
            return name
    raise SystemExit(f"no interface on a segment holding {address}: is this gateway on that access segment?")


def ip_batch(commands: list[str]) -> None:
    """Many address changes in one `ip` process: a failover of a whole site moves dozens at once."""
    if commands:
        subprocess.run(["ip", "-batch", "-"], input="".join(f"{c}\n" for c in commands), text=True, check=True)


def announce(address: str, device: str) -> None:
    """Two gratuitous ARP requests: 'address is at my MAC', broadcast on the segment."""
    with open(f"/sys/class/net/{device}/address") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    ip = socket.inet_aton(address)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, b"\0" * 6, ip)
    frame = b"\xff" * 6 + mac + struct.pack("!H", 0x0806) + arp
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
        raw.bind((device, 0))
        for _ in range(2):
            raw.send(frame)


def recorded() -> list[str]:
    try:
        with open(RECORD) as f:
            return [line.split()[0] for line in f if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return []


def record(addresses: list[str]) -> None:
    os.makedirs(os.path.dirname(RECORD), exist_ok=True)
    with open(RECORD + ".tmp", "w") as f:
        f.write("".join(f"{a}\n" for a in sorted(addresses)))
    os.replace(RECORD + ".tmp", RECORD)


def take(addresses: list[str]) -> None:
    found = interfaces()
    devices = {a: device_for(a, found) for a in addresses}
    have = held(found)
    ip_batch([f"addr add {a}/32 dev {d}" for a, d in devices.items() if a not in have])
    for address, device in devices.items():
        announce(address, device)


def release(addresses: list[str]) -> None:
    have = held(interfaces())
    ip_batch([f"addr del {a}/32 dev {have[a]}" for a in addresses if a in have])


@contextlib.contextmanager
def locked():
    os.makedirs(os.path.dirname(RECORD), exist_ok=True)
    fd = os.open(os.path.dirname(RECORD), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    verb, addresses = (argv[0] if argv else ""), argv[1:]
    for address in addresses:
        ipaddress.IPv4Address(address)
    with locked():
        return apply(verb, addresses)


def apply(verb: str, addresses: list[str]) -> int:
    if verb == "hold" and not addresses:
        wanted = recorded()
        release([a for a in held(interfaces()) if a not in wanted])
        take(wanted)
    elif verb == "take" and addresses:
        take(addresses)
        record(recorded() + [a for a in addresses if a not in recorded()])
    elif verb == "release" and addresses:
        release(addresses)
        record([a for a in recorded() if a not in addresses])
    elif verb == "list" and not addresses:
        print("\n".join(sorted(held(interfaces()))))
    else:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

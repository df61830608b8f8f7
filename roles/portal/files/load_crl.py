#!/usr/bin/env python3
"""Load the card CRL into the running HAProxy through its admin socket (set, then commit): the next
TLS handshake is checked against it, with no reload and no connection dropped. The file stays
where the configuration names it, for HAProxy's next start.

Usage: portal-load-crl SOCKET CRL_FILE"""

import socket
import sys


def ask(path: str, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as admin:
        admin.settimeout(10)
        admin.connect(path)
        admin.sendall(command.encode())
        answer = b""
        while chunk := admin.recv(65536):
            answer += chunk
    return answer.decode(errors="replace").strip()


def main() -> int:
    admin, crl_file = sys.argv[1], sys.argv[2]
    with open(crl_file, encoding="ascii") as crl:
        payload = crl.read().strip()
    for command in (f"set ssl crl-file {crl_file} <<\n{payload}\n\n", f"commit ssl crl-file {crl_file}\n"):
        answer = ask(admin, command)
        print(answer)
        if "rror" in answer or "nknown" in answer:  # HAProxy's refusals say "error" or "unknown"
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What マイ・ポータル is given by the controller: its server certificate, the card CA it trusts
and the CRL of revoked cards; and a revocation pushed to it at once.

    certify_portal(cfg)                 # before a configure: certificate, CA and CRL in place
    push_card_revocations(lab)          # after a revoke: the portal refuses the card at the next sign-in
"""

from __future__ import annotations

from pathlib import Path

from ..model.naming import PORTAL_NAME
from ..model.schema import StackConfig
from ..model.topology import plan
from ..state.cards import card_authority, card_revocation_list, portal_certificate
from .lab import Lab

__all__ = ["CARD_CRL_PATH", "certify_portal", "push_card_revocations"]

# roles/portal/defaults/main.yml: portal_tls_dir, portal_load_crl, portal_admin_socket
CARD_CRL_PATH = "/etc/portal/tls/cards.crl"
LOAD_CRL = "/usr/local/sbin/portal-load-crl /run/portal-haproxy.sock"


def certify_portal(cfg: StackConfig) -> Path:
    """The portal's certificate, the card CA and the CRL, issued or kept; their directory."""
    found = portal_certificate(cfg.stack, PORTAL_NAME, plan(cfg).vm("portal").addresses["internet"])
    card_authority(cfg.stack)
    card_revocation_list(cfg.stack)
    return found.certificate.parent


def push_card_revocations(lab: Lab) -> bool:
    """The card CRL signed anew and loaded by the portal's HAProxy when it runs (through its admin
    socket: the next handshake is checked against it); False when the portal does not run (its
    next configure puts it in place)."""
    crl = card_revocation_list(lab.stack).read_bytes()
    if not lab.running("portal"):
        return False
    lab.write_file("portal", CARD_CRL_PATH, crl, 0o644)
    lab.run("portal", f"{LOAD_CRL} {CARD_CRL_PATH}", timeout=20)
    return True

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

CARD_CRL_PATH = "/etc/portal/tls/cards.crl"  # roles/portal/defaults/main.yml: portal_tls_dir


def certify_portal(cfg: StackConfig) -> Path:
    """The portal's certificate, the card CA and the CRL, issued or kept; their directory."""
    found = portal_certificate(cfg.stack, PORTAL_NAME, plan(cfg).vm("portal").addresses["internet"])
    card_authority(cfg.stack)
    card_revocation_list(cfg.stack)
    return found.certificate.parent


def push_card_revocations(lab: Lab) -> bool:
    """The card CRL signed anew and loaded by the portal when it runs (HAProxy reloads without
    dropping connections); False when the portal does not run (its next configure loads it)."""
    crl = card_revocation_list(lab.stack).read_bytes()
    if not lab.running("portal"):
        return False
    lab.write_file("portal", CARD_CRL_PATH, crl, 0o644)
    lab.run("portal", "sv 2 haproxy", timeout=20)  # runit's USR2: the master re-reads its files
    return True

"""How offices reach the LGWAN-ASP front: the certificates `configure` hands to the gateways and
terminals, and `lgcloud ca` revoking an office's certificate at the gateways at once.

    certify_front(cfg)                  # before a configure: every certificate and the CRL in place
    push_revocations(cfg)               # after a revoke: both gateways refuse it at the next request
"""

from __future__ import annotations

from pathlib import Path

from ..model.naming import SERVICE_DOMAIN
from ..model.schema import BUSINESS_SYSTEMS, StackConfig
from ..model.topology import plan
from ..state.offices import office_certificate, revocation_list, server_certificate
from .lab import Lab, LabError

__all__ = ["CRL_PATH", "certify_front", "push_revocations"]

CRL_PATH = "/etc/haproxy/tls/offices.crl"  # roles/gateway/defaults/main.yml: gateway_tls_dir


def certify_front(cfg: StackConfig) -> Path:
    """The gateways' server certificate (every service name and address of the front), each
    office's client certificate and the CRL, issued or kept; their directory."""
    topology = plan(cfg)
    names = [f"{system}.{m.id}.{SERVICE_DOMAIN}" for m in cfg.municipalities for system in BUSINESS_SYSTEMS]
    gateways = [vm for vm in topology.vms if vm.role == "gateway"]
    addresses = sorted(
        {
            *topology.service_addresses.values(),
            *(a for g in gateways for k, a in g.addresses.items() if k in ("lgwan", "ipvpn")),
        }
    )
    found = server_certificate(cfg.stack, names, addresses)
    for m in cfg.municipalities:
        office_certificate(cfg.stack, m.id)
    revocation_list(cfg.stack)
    return found.certificate.parent


def push_revocations(cfg: StackConfig) -> list[str]:
    """The CRL signed anew and loaded by every running gateway (HAProxy reloads without dropping
    connections); the gateways it reached."""
    crl = revocation_list(cfg.stack).read_bytes()
    reached = []
    with Lab(cfg) as lab:
        for vm in (v.name for v in lab.topology.vms if v.role == "gateway"):
            if not lab.running(vm):
                continue
            lab.write_file(vm, CRL_PATH, crl, 0o644)
            lab.run(vm, "sv 2 haproxy", timeout=20)  # runit's USR2: the master re-reads its files
            reached.append(vm)
    if not reached:
        raise LabError(f"no gateway of stack {cfg.stack} runs; the revocation takes effect at the next configure")
    return reached

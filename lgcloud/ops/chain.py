"""Where a 情報提供等記録 chain begins: the genesis, or past the records a retention purge removed
(``chukan.chain_base``, kept by ``lgcloud linkage purge-records``). Read by the chain walk and by
failback, which must not count records the backup purged as missing there."""

from __future__ import annotations

from dataclasses import dataclass

from ..model.naming import CHUKAN_DATABASE
from .lab import Lab

__all__ = ["Base", "tenant_base"]


@dataclass(frozen=True)
class Base:
    """Where a chain's walk begins: the genesis, or the last record a purge removed."""

    start: int = 0  # the first kept record's position
    previous: str = ""  # the hash it follows on from ("": the genesis)


def tenant_base(lab: Lab, vm: str, database: str = CHUKAN_DATABASE) -> Base:
    """Where the tenant's chain begins: past its latest purge, if any."""
    query = (
        "SELECT CASE WHEN to_regclass('chukan.chain_base') IS NULL THEN '' ELSE coalesce("
        "(SELECT position || ' ' || hash FROM chukan.chain_base ORDER BY position DESC LIMIT 1), '') END"
    )
    found = lab.sql(vm, query, database=database).strip()
    if not found:
        return Base()
    position, _, previous = found.partition(" ")
    return Base(int(position) + 1, previous)

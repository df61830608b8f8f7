"""番号連携 as data: the permission table the broker enforces (``linkage/permissions.yaml``).

A query names the requesting 事務, the kind of body it asks and one data item; the broker answers
only what a row of the table allows and refuses everything else with the reason::

    >>> table = load_permissions()
    >>> table.allows("個人住民税の賦課", "former-municipality", "前年の所得")
    True
    >>> table.refusal("個人住民税の賦課", "former-municipality", "口座番号")
    '個人住民税の賦課 may not receive 口座番号 from a former-municipality'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..paths import PROJECT_ROOT

__all__ = ["PERMISSIONS", "Permission", "PermissionTable", "load_permissions"]

PERMISSIONS = PROJECT_ROOT / "linkage" / "permissions.yaml"

Provider = Literal["former-municipality", "municipality"]


class Permission(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    office: str = Field(min_length=1, max_length=40)
    provider: Provider
    items: tuple[str, ...] = Field(min_length=1)

    @field_validator("items")
    @classmethod
    def _distinct(cls, items: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(items)) != len(items):
            raise ValueError("an item is listed twice")
        return items


class PermissionTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    permissions: tuple[Permission, ...] = Field(min_length=1)

    @field_validator("permissions")
    @classmethod
    def _one_row_per_pair(cls, rows: tuple[Permission, ...]) -> tuple[Permission, ...]:
        seen = set()
        for row in rows:
            if (row.office, row.provider) in seen:
                raise ValueError(f"{row.office} ← {row.provider} is listed twice: give it one row")
            seen.add((row.office, row.provider))
        return rows

    def allows(self, office: str, provider: str, item: str) -> bool:
        return self.refusal(office, provider, item) is None

    def refusal(self, office: str, provider: str, item: str) -> str | None:
        """Why the table refuses the query, or None when a row allows it."""
        for row in self.permissions:
            if row.office == office and row.provider == provider:
                return None if item in row.items else f"{office} may not receive {item} from a {provider}"
        return f"{office} may not ask a {provider} for anything"


def load_permissions(path: Path = PERMISSIONS) -> PermissionTable:
    """The table, or an OperatorError naming the row and key at fault."""
    try:
        return PermissionTable.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors())
        raise OperatorError(
            f"{path}: {problems}", "fix the table; every row names office, provider and items", EXIT_BAD_INPUT
        ) from None

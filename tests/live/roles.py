"""What a role's script declares, read from the role's source: the SQL a test runs to build a scratch
database of the shape the role makes (the script itself is written for the VMs, not to be imported).

>>> role_sql("jumin", "jumin.py", "SCHEMA").lstrip().startswith("CREATE TABLE IF NOT EXISTS residents")
True
"""

from __future__ import annotations

import ast

from lgcloud.paths import ROLES_DIR

__all__ = ["role_sql"]


def role_sql(role: str, script: str, name: str) -> str:
    """The string constant `name` of roles/<role>/files/<script>, as the script's top level assigns it."""
    source = (ROLES_DIR / role / "files" / script).read_text(encoding="utf-8")
    assignment = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name
    )
    sql = ast.literal_eval(assignment.value)
    assert isinstance(sql, str), f"{script}'s {name} is not a string"
    return sql

"""The broker's permission table: data in the repo, validated, and the only source of what may
be asked of whom."""

from __future__ import annotations

import pytest

from lgcloud.errors import OperatorError
from lgcloud.model.linkage import load_permissions


def test_the_table_in_the_repo_is_valid_and_allows_the_seeds_move_in_case():
    table = load_permissions()
    assert table.allows("個人住民税の賦課", "former-municipality", "前年の所得")
    assert not table.allows("個人住民税の賦課", "municipality", "前年の所得")
    assert "may not ask" in (table.refusal("住民票の写しの交付", "former-municipality", "前年の所得") or "")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("permissions: []", "permissions"),
        ("permissions:\n  - {office: 税, provider: nation, items: [所得]}", "permissions.0.provider"),
        ("permissions:\n  - {office: 税, provider: municipality, items: [所得, 所得]}", "listed twice"),
        (
            "permissions:\n  - {office: 税, provider: municipality, items: [所得]}\n"
            "  - {office: 税, provider: municipality, items: [課税]}",
            "give it one row",
        ),
        ("permissions:\n  - {office: 税, provider: municipality, items: [所得], extra: 1}", "extra"),
    ],
)
def test_a_malformed_table_is_refused_naming_the_row(tmp_path, text, named):
    path = tmp_path / "permissions.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(OperatorError) as refused:
        load_permissions(path)
    assert named in str(refused.value) and refused.value.exit_code == 2

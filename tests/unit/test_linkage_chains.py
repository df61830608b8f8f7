"""A chain of 情報提供等記録 against its anchor: where it ended at the last intact check. The links
alone miss the newest records removed and a chain recomputed whole; the anchor does not."""

from __future__ import annotations

import shutil

import pytest

from lgcloud.ops.linkage import linkage_core, walk_chain
from lgcloud.state.chains import Anchor, anchors, forget_anchors, keep_anchors
from lgcloud.state.directory import state_dir

core = linkage_core()


def chain(texts: list[str]) -> list[tuple[str, str]]:
    records, previous = [], core.GENESIS
    for text in texts:
        previous = core.chain_hash(previous, text)
        records.append((previous, text))
    return records


RECORDS = chain([core.canonical({"position": n, "office": "個人住民税の賦課"}) for n in range(20)])


def walk(records, anchor=None):
    return walk_chain("a-city", "a-city-db", iter(records), anchor)


def test_a_first_check_of_an_intact_chain_is_intact_and_gives_its_end():
    check = walk(RECORDS)
    assert (check.records, check.first_broken, check.anchored, check.intact) == (20, None, "first check", True)
    assert check.last_hash == RECORDS[-1][0]


def test_a_chain_that_grew_since_holds_its_anchor():
    check = walk(RECORDS, Anchor(15, RECORDS[14][0]))
    assert (check.anchored, check.intact) == ("held", True)


def test_the_newest_records_removed_are_found_though_every_link_holds():
    check = walk(RECORDS[:17], Anchor(20, RECORDS[19][0]))
    assert (check.first_broken, check.anchored, check.intact) == (None, "shorter", False)


def test_a_chain_recomputed_after_a_change_is_found_though_every_link_holds():
    texts = [text for _, text in RECORDS]
    texts[3] = texts[3].replace("個人住民税の賦課", "児童手当の支給")
    forged = chain(texts)  # every hash after the change recomputed: no key stops that
    check = walk(forged, Anchor(20, RECORDS[19][0]))
    assert (check.first_broken, check.anchored, check.intact) == (None, "rewritten", False)


def test_a_broken_link_is_not_intact_whatever_the_anchor():
    changed = [*RECORDS[:5], (RECORDS[5][0], RECORDS[5][1].replace("賦課", "徴収")), *RECORDS[6:]]
    check = walk(changed, Anchor(20, RECORDS[19][0]))
    assert (check.first_broken, check.records, check.intact) == (5, 20, False)


@pytest.fixture
def stack():
    yield "chainstest"
    shutil.rmtree(state_dir("chainstest"), ignore_errors=True)


def test_anchors_are_kept_private_and_read_back(stack):
    assert anchors(stack) == {}
    keep_anchors(stack, {"a-city": Anchor(20, RECORDS[19][0]), "broker": Anchor(0, "")})
    assert anchors(stack) == {"a-city": Anchor(20, RECORDS[19][0]), "broker": Anchor(0, "")}
    assert (state_dir(stack) / "chains.json").stat().st_mode & 0o777 == 0o600
    forget_anchors(stack)
    assert anchors(stack) == {}, "a lab made afresh would be checked against chains deleted with its data"

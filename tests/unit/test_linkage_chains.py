"""A chain of 情報提供等記録 against its anchor: where it ended at the last intact check. The links
alone miss the newest records removed and a chain recomputed whole; the anchor does not."""

from __future__ import annotations

import shutil

import pytest

from lgcloud.ops.linkage import Base, linkage_core, walk_chain
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


def walk(records, anchor=None, base=None):
    return walk_chain("a-city", "a-city-db", iter(records), anchor, base or Base())


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


# After a purge of positions 0-11: the kept records follow on from the last purged one's hash.
PURGED = Base(12, RECORDS[11][0])


def test_a_purged_chain_is_walked_from_its_base_and_breaks_are_named_by_position():
    check = walk(RECORDS[12:], base=PURGED)
    assert (check.first_position, check.records, check.length, check.intact) == (12, 8, 20, True)
    changed = [*RECORDS[12:15], (RECORDS[15][0], RECORDS[15][1].replace("賦課", "徴収")), *RECORDS[16:]]
    assert walk(changed, base=PURGED).first_broken == 15
    assert walk(RECORDS[12:], base=Base(12, RECORDS[10][0])).first_broken == 12  # a base that is not the chain's


def test_an_anchor_a_purge_went_past_is_purged_since_and_one_it_reached_must_match_the_base():
    assert walk(RECORDS[12:], Anchor(10, RECORDS[9][0]), PURGED).anchored == "purged since"
    assert walk(RECORDS[12:], Anchor(12, RECORDS[11][0]), PURGED).anchored == "purged since"
    assert walk(RECORDS[12:], Anchor(12, "f" * 64), PURGED).anchored == "rewritten"
    assert walk(RECORDS[12:], Anchor(16, RECORDS[15][0]), PURGED).anchored == "held"
    assert walk(RECORDS[12:17], Anchor(20, RECORDS[19][0]), PURGED).anchored == "shorter"


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

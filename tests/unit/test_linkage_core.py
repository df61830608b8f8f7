"""番号連携's rules as the broker and the 中間サーバー run them (roles/linkage/files/linkage_core.py):
符号 per body, signed requests that cannot be altered, replayed or kept, and a hash chain of
情報提供等記録 whose first broken link is found."""

from __future__ import annotations

import doctest
import secrets

import pytest

from lgcloud.ops.linkage import linkage_core

core = linkage_core()  # as the VMs and `lgcloud linkage` import it, from the role's files

KEY = secrets.token_bytes(32)
NOW = 1_800_000_000.0
BODY = '{"item": "前年の所得"}'.encode()
OTHER = '{"item": "口座番号"}'.encode()


def test_the_module_documents_itself_truly():
    assert doctest.testmod(core).failed == 0


def test_a_fugo_is_per_body_and_per_key_and_stable():
    person = "48213907715"
    assert core.fugo(KEY, "012025", person) == core.fugo(KEY, "012025", person)
    assert core.fugo(KEY, "012025", person) != core.fugo(KEY, "013315", person)
    assert core.fugo(KEY, "012025", person) != core.fugo(secrets.token_bytes(32), "012025", person)
    assert core.fugo(KEY, "012025", person) != core.fugo(KEY, "012025", "48213907716")


@pytest.mark.parametrize(
    ("body", "resident"), [("12025", "48213907715"), ("012025", "４８２１３９０７７１５"), ("012025", "")]
)
def test_a_fugo_of_a_malformed_code_is_refused(body, resident):
    with pytest.raises(core.Refused):
        core.fugo(KEY, body, resident)


def signed(body: bytes = BODY, path: str = "/query", nonce: str | None = None, at: float = NOW):
    return core.sign(KEY, "013315", path, body, nonce or secrets.token_urlsafe(16), at).headers()


def test_a_signed_request_is_accepted_once():
    seen = core.Nonces(NOW)
    headers = signed()
    assert core.verify({"013315": KEY}, headers, "/query", BODY, seen, NOW + 5) == "013315"
    with pytest.raises(core.Refused, match="replay"):
        core.verify({"013315": KEY}, headers, "/query", BODY, seen, NOW + 6)


def test_a_receiver_that_restarted_refuses_what_was_signed_before_it_started():
    """Its memory of nonces is gone; so is every request it could have seen."""
    headers = signed(at=NOW - 5)
    with pytest.raises(core.Refused, match="before the receiver started"):
        core.verify({"013315": KEY}, headers, "/query", BODY, core.Nonces(NOW), NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h: {**h, "X-Linkage-Body": "012025"}, "not the body's key|signature"),
        (lambda h: {**h, "X-Linkage-Body": "999999"}, "not signed by a known body"),
        (lambda h: {**h, "X-Linkage-Mac": "0" * 64}, "signature"),
        (lambda h: {**h, "X-Linkage-Timestamp": str(int(NOW) - 3600)}, "too far"),
        (lambda h: {**h, "X-Linkage-Timestamp": "１８００"}, "not signed"),
        (lambda h: {k: v for k, v in h.items() if k != "X-Linkage-Nonce"}, "not signed"),
    ],
    ids=["another-body", "unknown-body", "mac", "stale", "full-width-time", "no-nonce"],
)
def test_an_altered_stale_or_unsigned_request_is_refused(change, reason):
    keys = {"013315": KEY, "012025": secrets.token_bytes(32)}
    with pytest.raises(core.Refused, match=reason):
        core.verify(keys, change(signed()), "/query", BODY, core.Nonces(NOW), NOW)


def test_an_altered_body_or_path_is_refused():
    headers = signed()
    for path, body in (("/query", OTHER), ("/records", BODY)):
        with pytest.raises(core.Refused, match="signature"):
            core.verify({"013315": KEY}, headers, path, body, core.Nonces(NOW), NOW)


def chain(n: int) -> list[tuple[str, dict]]:
    records, previous = [], core.GENESIS
    for i in range(n):
        record = {"at": f"2026-12-01T10:00:{i:02d}+09:00", "office": "個人住民税の賦課", "item": "前年の所得", "n": i}
        text = core.canonical(record)
        previous = core.chain_hash(previous, text)
        records.append((previous, text))
    return records


def test_an_intact_chain_holds_and_each_kind_of_tampering_is_found_where_it_is():
    records = chain(50)
    assert core.first_broken(records) is None
    changed = [*records[:20], (records[20][0], records[20][1].replace("前年の所得", "口座番号")), *records[21:]]
    assert core.first_broken(changed) == 20
    removed = records[:30] + records[31:]
    assert core.first_broken(removed) == 30
    inserted = records[:10] + [(core.chain_hash(records[9][0], '{"n":"forged"}'), '{"n":"forged"}')] + records[10:]
    assert core.first_broken(inserted) == 11  # the forgery links; the record after it no longer does

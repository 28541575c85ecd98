"""Partner offers and pool code uploads through the API under moto (docs/coalition.md)."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.offers import SHARDS
from chalicelib.store import keys
from chalicelib.store.members import batch_get
from chalicelib.store.offers import PoolCodeItem, PoolHeadItem, PoolSlotItem
from tests.support import ApiClient

POOL_OFFER = {"name": "Coffee on us", "kind": "free_item", "item": "Cappuccino", "code_source": "pool",
              "low_pool_threshold": 5, "valid_days": 30}


@pytest.fixture
def setup(api: ApiClient) -> dict[str, Any]:
    program = api.create_program(name="Coalition")
    pid = program["program_id"]
    cafe = api.create_partner(pid, name="Cafe")
    bank = api.create_partner(pid, name="Bank")
    return {"pid": pid, "cafe": cafe, "bank": bank}


def base(s: dict[str, Any], partner: str = "cafe") -> str:
    return f"/v1/programs/{s['pid']}/partners/{s[partner]['partner_id']}/offers"


def create(api: ApiClient, s: dict[str, Any], body: dict[str, Any] | None = None, key: str = "operator") -> Any:
    reply = api.post(base(s), body or POOL_OFFER, key=key)
    assert reply.status == 201, reply.body
    return reply.body


def upload_csv(api: ApiClient, path: str, text: str, key: str = "operator") -> Any:
    return api.call("POST", path, raw=text.encode("utf-8"), key=key, headers={"Content-Type": "text/csv"})


def test_offer_crud_by_the_partner_itself(api: ApiClient, setup: dict[str, Any]) -> None:
    key = setup["cafe"]["api_key"]
    offer = create(api, setup, key=key)
    assert offer["kind"] == "free_item" and offer["item"] == "Cappuccino"
    assert offer["pool"] == {"size": 0, "remaining": 0, "issued": 0, "low": True}
    static = create(api, setup, {"name": "10% off", "kind": "percent_off", "percent": 10, "code_source": "static",
                                 "static_code": "FIT10"}, key=key)
    assert static["static_code"] == "FIT10" and "pool" not in static
    listed = api.get(base(setup), key=key).body["items"]
    assert {o["offer_id"] for o in listed} == {offer["offer_id"], static["offer_id"]}
    path = f"{base(setup)}/{offer['offer_id']}"
    changed = api.patch(path, {"name": "Free coffee", "enabled": False, "description": None}, key=key)
    assert changed.status == 200, changed.body
    assert changed.body["name"] == "Free coffee" and changed.body["enabled"] is False
    assert api.get(path, key=key).body["name"] == "Free coffee"
    gone = api.call("DELETE", path, key=key)
    assert gone.status == 200 and gone.body["archived"] is True
    assert api.get(path, key=key).status == 404
    assert [o["offer_id"] for o in api.get(base(setup), key=key).body["items"]] == [static["offer_id"]]


@pytest.mark.parametrize(("body", "path"), [
    ({"name": "x", "kind": "percent_off", "code_source": "pool"}, "$.percent"),
    ({"name": "x", "kind": "fixed_discount", "amount_minor": 50000, "code_source": "pool"}, "$.currency"),
    ({"name": "x", "kind": "free_item", "item": "Tea", "percent": 5, "code_source": "pool"}, "$.percent"),
    ({"name": "x", "kind": "subscription_month", "subscription": "Gym", "code_source": "static"}, "$.static_code"),
    ({"name": "x", "kind": "free_item", "item": "Tea", "code_source": "pool", "static_code": "A1"}, "$.static_code"),
])
def test_offer_value_must_match_its_kind(api: ApiClient, setup: dict[str, Any], body: dict[str, Any],
                                         path: str) -> None:
    reply = api.post(base(setup), body)
    assert reply.status == 422, reply.body
    assert path in [e["path"] for e in reply.body["error"]["details"]["errors"]]


def test_json_upload_spreads_codes_over_the_shards(api: ApiClient, setup: dict[str, Any]) -> None:
    offer = create(api, setup)
    codes = [f"CAFE-{i:04d}" for i in range(100)]
    reply = api.post(f"{base(setup)}/{offer['offer_id']}/codes", {"codes": codes})
    assert reply.status == 200, reply.body
    assert reply.body["accepted"] == 100 and reply.body["pool"] == {"size": 100, "remaining": 100}
    heads = batch_get([keys.pool_head(setup["pid"], offer["offer_id"], s) for s in range(SHARDS)])
    sizes = [int(h.size) for h in heads.values() if isinstance(h, PoolHeadItem)]
    assert sum(sizes) == 100 and len(sizes) == SHARDS and min(sizes) > 0
    # Every code has a slot and a uniqueness item; slots are contiguous per shard.
    slots = [i for s in range(SHARDS) for i in PoolSlotItem.query(keys.pool_partition(setup["pid"], offer["offer_id"], s),
                                                                  PoolSlotItem.SK.startswith("SLOT#"))]
    assert sorted(s.code for s in slots) == codes
    got = api.get(f"{base(setup)}/{offer['offer_id']}").body
    assert got["pool"] == {"size": 100, "remaining": 100, "issued": 0, "low": False}


def test_csv_upload_with_bom_crlf_and_a_header(api: ApiClient, setup: dict[str, Any]) -> None:
    offer = create(api, setup)
    path = f"{base(setup)}/{offer['offer_id']}/codes"
    reply = upload_csv(api, path, "\ufeffcode,note\r\nA-1,first\r\nA-2,second\r\n\r\n A-3 ,third\r\n")
    assert reply.status == 200, reply.body
    assert reply.body["accepted"] == 3
    plain = upload_csv(api, path, "B-1\nB-2\n")
    assert plain.status == 200 and plain.body["pool"]["size"] == 5


def test_duplicates_in_the_upload_are_listed_and_nothing_is_written(api: ApiClient, setup: dict[str, Any]) -> None:
    offer = create(api, setup)
    path = f"{base(setup)}/{offer['offer_id']}/codes"
    reply = upload_csv(api, path, "X-1\r\nX-2\r\nX-1\r\nX-3\r\nX-2\r\n")
    assert reply.status == 422 and reply.error_code == "duplicate_codes", reply.body
    assert reply.body["error"]["details"] == {"duplicates": ["X-1", "X-2"], "count": 2}
    assert api.get(f"{base(setup)}/{offer['offer_id']}").body["pool"]["size"] == 0
    from chalicelib.domain.offers import code_hash

    code_keys = [keys.pool_code(setup["pid"], offer["offer_id"], code_hash(c)) for c in ("X-1", "X-2", "X-3")]
    assert not [i for i in batch_get(code_keys).values() if isinstance(i, PoolCodeItem)]


def test_codes_already_in_the_pool_are_refused_and_listed(api: ApiClient, setup: dict[str, Any]) -> None:
    offer = create(api, setup)
    path = f"{base(setup)}/{offer['offer_id']}/codes"
    assert api.post(path, {"codes": ["P-1", "P-2"]}).status == 200
    again = api.post(path, {"codes": ["P-3", "P-2", "P-1"]})
    assert again.status == 422 and again.error_code == "codes_already_present", again.body
    assert again.body["error"]["details"] == {"codes": ["P-2", "P-1"], "count": 2}
    assert api.get(f"{base(setup)}/{offer['offer_id']}").body["pool"]["size"] == 2
    # The same codes in another offer's pool are fine (codes are unique per pool).
    other = create(api, setup)
    assert api.post(f"{base(setup)}/{other['offer_id']}/codes", {"codes": ["P-1"]}).status == 200


def test_upload_limits(api: ApiClient, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    offer = create(api, setup)
    path = f"{base(setup)}/{offer['offer_id']}/codes"
    too_many = api.post(path, {"codes": [f"C{i}" for i in range(5001)]})
    assert too_many.status == 422, too_many.body
    csv_many = upload_csv(api, path, "\n".join(f"C{i}" for i in range(5001)))
    assert csv_many.status == 422 and csv_many.error_code == "too_many_codes", csv_many.body
    bad = api.post(path, {"codes": ["ok-1", "has space", ""]})
    assert bad.status == 422 and bad.error_code == "invalid_codes", bad.body
    assert [e["path"] for e in bad.body["error"]["details"]["errors"]] == ["$.codes[1]", "$.codes[2]"]
    big = upload_csv(api, path, "C" * 300_000)
    assert big.status == 413, big.body
    assert upload_csv(api, path, "").status == 422
    # The pool's own limit (lowered here so the test stays fast; the real one is 100,000).
    from chalicelib.services import offers

    monkeypatch.setattr(offers, "MAX_POOL_CODES", 10)
    assert api.post(path, {"codes": [f"D{i}" for i in range(8)]}).status == 200
    full = api.post(path, {"codes": ["E1", "E2", "E3"]})
    assert full.status == 422 and full.error_code == "pool_full", full.body
    assert api.get(f"{base(setup)}/{offer['offer_id']}").body["pool"]["size"] == 8


def test_static_offers_take_no_codes(api: ApiClient, setup: dict[str, Any]) -> None:
    offer = create(api, setup, {"name": "10% off", "kind": "percent_off", "percent": 10, "code_source": "static",
                                "static_code": "FIT10"})
    reply = api.post(f"{base(setup)}/{offer['offer_id']}/codes", {"codes": ["A"]})
    assert reply.status == 422 and reply.error_code == "not_a_pool_offer"


def test_partners_cannot_see_or_edit_each_others_offers(api: ApiClient, setup: dict[str, Any]) -> None:
    offer = create(api, setup, key=setup["cafe"]["api_key"])
    bank = setup["bank"]["api_key"]
    path = f"{base(setup)}/{offer['offer_id']}"
    assert api.get(base(setup), key=bank).status == 403
    assert api.get(path, key=bank).status == 403
    assert api.patch(path, {"name": "Hijacked"}, key=bank).status == 403
    assert api.call("DELETE", path, key=bank).status == 403
    assert api.post(f"{path}/codes", {"codes": ["Z1"]}, key=bank).status == 403
    assert api.post(base(setup), POOL_OFFER, key=bank).status == 403
    # The bank's own offers are its own; the operator sees both.
    assert api.post(base(setup, "bank"), POOL_OFFER, key=bank).status == 201
    assert api.get(path, key=setup["cafe"]["api_key"]).body["name"] == "Coffee on us"
    assert api.get(path).status == 200
    # Another program's partner learns nothing (404).
    stranger = api.create_partner(api.create_program(name="Other")["program_id"])
    assert api.get(path, key=stranger["api_key"]).status == 404

"""Rules documents over HTTP: validation with JSON paths, immutable versions, postings record the version."""

from __future__ import annotations

from chalicelib.domain.rewards.examples import load_example_doc
from tests.functional.test_ledger_support import Shop
from tests.support import ApiClient


def test_versions_are_appended_never_rewritten_and_postings_record_them(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    pid = shop.pid
    shop.member("a")
    first = shop.order("a", "o-1", 100_000)["rewards"]["postings"][0]
    assert (first["rule_id"], first["rule_version"], first["points"]) == ("cashback", 1, 50)

    doc = load_example_doc("uds_3_level")
    doc["rules"][0]["amount"]["rate_bp"] = 1000
    doc["version"] = 99  # ignored: the server numbers versions
    stored = api.put(f"/v1/programs/{pid}/rules", doc)
    assert stored.status == 200 and stored.body["version"] == 2 and stored.body["current"] is True
    second = shop.order("a", "o-2", 100_000)["rewards"]["postings"][0]
    assert (second["rule_version"], second["points"]) == (2, 100)

    current = api.get(f"/v1/programs/{pid}/rules").body
    assert current["version"] == 2 and current["document"]["rules"][0]["amount"]["rate_bp"] == 1000
    old = api.get(f"/v1/programs/{pid}/rules?version=1").body
    assert old["version"] == 1 and old["current"] is False
    assert old["document"]["rules"][0]["amount"]["rate_bp"] == 500
    assert old["document"]["point_value_minor"] == 100 and old["document"]["currency"] == "RUB"
    assert api.get(f"/v1/programs/{pid}/rules?version=3").status == 404
    assert api.get(f"/v1/programs/{pid}").body["rules_version"] == 2
    # Partners may read their program's rules but not change them.
    key = shop.partner["api_key"]
    assert api.get(f"/v1/programs/{pid}/rules", key=key).status == 200
    assert api.put(f"/v1/programs/{pid}/rules", doc, key=key).status == 403


def test_invalid_documents_are_422_with_the_json_path_and_store_nothing(api: ApiClient) -> None:
    shop = Shop(api, None)
    pid = shop.pid
    bad = load_example_doc("single_shop")
    bad["rules"][1]["amount"]["percent"] = 5
    reply = api.put(f"/v1/programs/{pid}/rules", bad)
    assert reply.status == 422 and reply.error_code == "validation_failed"
    assert reply.body["error"]["details"]["errors"][0]["path"] == "$.rules[1].amount.percent"

    deep = load_example_doc("uds_3_level")
    deep["max_depth"] = 5
    deep["rules"].append({"id": "level-4", "trigger": {"event": "order.paid"},
                          "recipient": {"type": "referrer", "level": 4}, "amount": {"rate_bp": 50}})
    reply = api.put(f"/v1/programs/{pid}/rules", deep)  # the program's settings.max_depth is 3
    assert reply.status == 422
    assert reply.body["error"]["details"]["errors"][0]["path"] == "$.rules[5].recipient.level"

    other_value = {**load_example_doc("uds_3_level"), "point_value_minor": 1}
    reply = api.put(f"/v1/programs/{pid}/rules", other_value)
    assert reply.status == 422 and reply.body["error"]["details"]["errors"][0]["path"] == "$.point_value_minor"

    # The coalition example as shipped names partners "bank", "cafe"... that this program lacks.
    reply = api.put(f"/v1/programs/{pid}/rules", load_example_doc("coalition"))
    assert reply.status == 422
    paths = {e["path"] for e in reply.body["error"]["details"]["errors"]}
    assert "$.rules[0].partners.cafe" in paths and "$.rules[1].funded_by" in paths

    assert api.put(f"/v1/programs/{pid}/rules", raw="[1]").status in (400, 422)
    assert api.get(f"/v1/programs/{pid}/rules").status == 404
    assert api.get(f"/v1/programs/{pid}").body["rules_version"] == 0


def test_the_schema_is_published(api: ApiClient) -> None:
    shop = Shop(api, None)
    schema = api.get(f"/v1/programs/{shop.pid}/rules/schema", key=shop.partner["api_key"]).body
    assert schema["$schema"].startswith("http://json-schema.org/draft-07")
    assert "rules" in schema["properties"]
    assert api.get("/v1/programs/prg_other/rules/schema", key=shop.partner["api_key"]).status == 404

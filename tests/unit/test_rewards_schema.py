"""Rules document: JSON Schema + semantic validation, examples, error paths."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from chalicelib.domain.errors import ValidationFailed
from chalicelib.domain.rewards import RULES_SCHEMA, load_rules, parse_rules
from chalicelib.domain.rewards.examples import EXAMPLES, load_example, load_example_doc


def rule(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "cashback",
        "trigger": {"event": "order.paid"},
        "recipient": {"type": "self"},
        "amount": {"rate_bp": 500},
    }
    base.update(overrides)
    return base


def errors_of(doc: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as exc:
        parse_rules(doc)
    assert exc.value.status == 422
    assert exc.value.code == "validation_failed"
    return list(exc.value.details["errors"])


def paths_of(doc: Any) -> list[str]:
    return [e["path"] for e in errors_of(doc)]


def test_schema_is_draft07_and_json_serialisable() -> None:
    assert RULES_SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert json.loads(json.dumps(RULES_SCHEMA)) == RULES_SCHEMA


def test_minimal_doc_gets_documented_defaults() -> None:
    doc = parse_rules({"rules": [rule()]})
    assert (doc.version, doc.max_depth, doc.hold_days, doc.point_value_minor) == (0, 3, 14, 100)
    assert doc.budget_points is None and doc.member_monthly_cap_points is None
    r = doc.rules[0]
    assert r.trigger.order == "every" and r.amount.base == "total" and r.recipient.level == 0
    assert r.enabled and r.partners == {}


def test_parse_does_not_mutate_input() -> None:
    raw = {"rules": [rule()]}
    snapshot = copy.deepcopy(raw)
    parse_rules(raw)
    assert raw == snapshot


def test_version_is_kept_and_referrer_level_defaults_to_1() -> None:
    doc = parse_rules({"version": 7, "rules": [rule(recipient={"type": "referrer"})]})
    assert doc.version == 7
    assert doc.rules[0].recipient.level == 1
    assert doc.depth_needed == 1


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_validates(name: str) -> None:
    doc = load_example(name)
    assert doc.rules
    assert load_example_doc(name) is not load_example_doc(name)  # fresh copy every call


def test_unknown_example_name() -> None:
    with pytest.raises(KeyError):
        load_example("nope")


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({}, "$.rules"),
        ([], "$"),
        ({"rules": [], "max_dpeth": 3}, "$.max_dpeth"),
        ({"rules": [rule(amount={"percent": 5})]}, "$.rules[0].amount.percent"),
        ({"rules": [rule(), rule(id="b", amount={"rate_bp": 0})]}, "$.rules[1].amount.rate_bp"),
        ({"rules": [rule(amount={"rate_bp": 10_001})]}, "$.rules[0].amount.rate_bp"),
        ({"rules": [rule(amount={"rate_bp": 5.0})]}, "$.rules[0].amount.rate_bp"),
        ({"rules": [rule(amount={"rate_bp": 5.5})]}, "$.rules[0].amount.rate_bp"),
        ({"rules": [rule(amount={"rate_bp": True})]}, "$.rules[0].amount.rate_bp"),
        ({"rules": [rule(amount={})]}, "$.rules[0].amount"),
        ({"rules": [rule(amount={"points": 5, "rate_bp": 5})]}, "$.rules[0].amount"),
        ({"rules": [rule(amount={"rate_bp": 5, "base": "gross"})]}, "$.rules[0].amount.base"),
        ({"rules": [rule(trigger={"event": "order.refunded"})]}, "$.rules[0].trigger.event"),
        ({"rules": [rule(trigger={"event": "custom."})]}, "$.rules[0].trigger.event"),
        ({"rules": [rule(trigger={"event": "order.paid", "order": "second"})]}, "$.rules[0].trigger.order"),
        ({"rules": [rule(recipient={"type": "parent"})]}, "$.rules[0].recipient.type"),
        ({"rules": [rule(recipient={"type": "referrer", "level": 6})]}, "$.rules[0].recipient.level"),
        ({"rules": [rule(id="Bad Id")]}, "$.rules[0].id"),
        ({"rules": [rule(trigger={})]}, "$.rules[0].trigger.event"),
        ({"rules": [rule(caps={"monthly": 5})]}, "$.rules[0].caps.monthly"),
        ({"rules": [rule(recurring={})]}, "$.rules[0].recurring"),
        ({"rules": [rule(partners={"cafe": {"rate": 1}})]}, "$.rules[0].partners.cafe.rate"),
        ({"rules": [rule(partners={"cafe": {"amount": {"rate_bp": -1}}})]}, "$.rules[0].partners.cafe.amount.rate_bp"),
        ({"rules": [rule(partners={"bad partner": {}})]}, "$.rules[0].partners"),
        ({"rules": [], "max_depth": 6}, "$.max_depth"),
        ({"rules": [], "point_value_minor": 0}, "$.point_value_minor"),
        ({"rules": [], "budget_points": -1}, "$.budget_points"),
        ({"rules": [], "currency": "rub"}, "$.currency"),
        (
            {"rules": [rule(recipient={"type": "referrer"}, amount={"tiers": [{"min_converted": 0, "percent": 1}]})]},
            "$.rules[0].amount.tiers[0].percent",
        ),
    ],
)
def test_schema_violations_point_at_the_field(doc: Any, path: str) -> None:
    assert path in paths_of(doc)


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"rules": [rule(), rule()]}, "$.rules[1].id"),
        ({"max_depth": 2, "rules": [rule(recipient={"type": "referrer", "level": 3})]}, "$.rules[0].recipient.level"),
        ({"rules": [rule(recipient={"type": "self", "level": 1})]}, "$.rules[0].recipient.level"),
        ({"rules": [rule(trigger={"event": "deal.won", "order": "first"})]}, "$.rules[0].trigger.order"),
        ({"rules": [rule(trigger={"event": "order.paid", "order": "nth"})]}, "$.rules[0].trigger.n"),
        ({"rules": [rule(trigger={"event": "order.paid", "n": 2})]}, "$.rules[0].trigger.n"),
        ({"rules": [rule(trigger={"event": "member.signup"})]}, "$.rules[0].amount.rate_bp"),
        (
            {"rules": [rule(trigger={"event": "member.signup"}, amount={"points": 1, "min_order_amount": 5})]},
            "$.rules[0].amount.min_order_amount",
        ),
        ({"rules": [rule(amount={"tiers": [{"min_converted": 0, "points": 1}]})]}, "$.rules[0].amount.tiers"),
        (
            {
                "rules": [
                    rule(
                        recipient={"type": "referrer"},
                        amount={"tiers": [{"min_converted": 1, "points": 1}]},
                    )
                ]
            },
            "$.rules[0].amount.tiers[0].min_converted",
        ),
        (
            {
                "rules": [
                    rule(
                        recipient={"type": "referrer"},
                        amount={"tiers": [{"min_converted": 0, "points": 1}, {"min_converted": 0, "points": 2}]},
                    )
                ]
            },
            "$.rules[0].amount.tiers[1].min_converted",
        ),
        (
            {
                "rules": [
                    rule(
                        recipient={"type": "referrer"},
                        amount={"tiers": [{"min_converted": 0, "points": 1}, {"min_converted": 5, "rate_bp": 2}]},
                    )
                ]
            },
            "$.rules[0].amount.tiers",
        ),
        ({"rules": [rule(recurring={"months": 12})]}, "$.rules[0].recurring"),
        (
            {"rules": [rule(trigger={"event": "deal.won"}, recipient={"type": "referrer"}, recurring={"orders": 2})]},
            "$.rules[0].recurring",
        ),
        (
            {"rules": [rule(partners={"cafe": {"amount": {"points": 1, "rate_bp": 1}}})]},
            "$.rules[0].partners.cafe.amount",
        ),
        (
            {"rules": [rule(partners={"x.y": {"amount": {"points": 1, "rate_bp": 1}}})]},
            "$.rules[0].partners['x.y'].amount",
        ),
    ],
)
def test_semantic_violations_point_at_the_field(doc: Any, path: str) -> None:
    assert path in paths_of(doc)


def test_semantic_errors_are_all_collected() -> None:
    doc = {
        "max_depth": 1,
        "rules": [rule(), rule(), rule(id="deep", recipient={"type": "referrer", "level": 2})],
    }
    errors = errors_of(doc)
    assert [e["path"] for e in errors] == ["$.rules[1].id", "$.rules[2].recipient.level"]
    assert "duplicate" in errors[0]["message"]
    assert "max_depth" in errors[1]["message"]


def test_error_message_names_the_path() -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_rules({"rules": [rule(amount={"percent": 5})]})
    assert "$.rules[0].amount.percent" in exc.value.message
    assert exc.value.details["errors"][0]["message"] == "is not an allowed property"


def test_partner_override_merges_over_rule_amount() -> None:
    doc = parse_rules(
        {
            "rules": [
                rule(
                    amount={"rate_bp": 100, "max_points": 50, "base": "subtotal"},
                    partners={"cafe": {"amount": {"rate_bp": 500}}, "fuel": {"amount": {"points": 7}}},
                )
            ]
        }
    )
    cafe = doc.rules[0].partners["cafe"].amount
    fuel = doc.rules[0].partners["fuel"].amount
    assert cafe is not None and fuel is not None
    assert (cafe.rate_bp, cafe.max_points, cafe.base) == (500, 50, "subtotal")
    assert (fuel.points, fuel.rate_bp, fuel.max_points) == (7, None, 50)


def test_custom_event_and_nth_order_parse() -> None:
    doc = parse_rules(
        {
            "rules": [
                rule(id="review", trigger={"event": "custom.review.posted"}, amount={"points": 10}),
                rule(id="third", trigger={"event": "order.paid", "order": "nth", "n": 3}, amount={"points": 10}),
            ]
        }
    )
    assert doc.rules[0].trigger.event == "custom.review.posted"
    assert (doc.rules[1].trigger.order, doc.rules[1].trigger.n) == ("nth", 3)


def test_validator_is_compiled_lazily_once() -> None:
    from chalicelib.domain.rewards import schema

    parse_rules({"rules": []})
    assert schema._validator() is schema._validator()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_stored_documents_load_without_validation_as_parsed(name: str) -> None:
    doc = load_example_doc(name)
    assert load_rules(doc) == parse_rules(doc)


def test_a_stored_document_the_builder_cannot_read_is_a_422_not_a_crash() -> None:
    with pytest.raises(ValidationFailed):
        load_rules({"rules": [{"id": "x"}]})

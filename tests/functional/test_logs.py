"""Logs are JSON with a request id and never carry emails, phones or keys."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from chalicelib.logs import JsonFormatter, scrub
from tests.support import ApiClient

EMAIL, PHONE = "olga.secret@example.com", "+79123456789"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sarafan")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def test_a_whole_flow_logs_json_without_personal_data_or_keys(api: ApiClient, log_lines: io.StringIO) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    olga = api.processed(partner, {"type": "member.signup", "occurred_at": "2026-11-23T10:00:00Z",
                                   "object": {"type": "customer", "id": "c-1"},
                                   "customer": {"id": "c-1", "email": EMAIL, "phone": PHONE, "name": "Olga"}})
    api.processed(partner, {"type": "order.paid", "occurred_at": "2026-11-23T11:00:00Z",
                            "object": {"type": "order", "id": "o-1"}, "customer": {"email": "friend@example.com"},
                            "order": {"total": 100_000, "currency": "RUB"},
                            "referral": {"code": olga["member"]["code"]}})
    api.post("/v1/landing/invites", {"email": EMAIL}, key=program["publishable_key"])
    api.get(f"/v1/programs/{program['program_id']}/members/lookup?email={EMAIL}", key=partner["api_key"])
    api.get("/v1/programs", key="srf_pk_wrong-key")

    text = log_lines.getvalue()
    records = [json.loads(line) for line in text.splitlines()]
    assert records, "nothing was logged"
    assert all(r["request_id"] != "-" for r in records if r["message"] == "request")
    for secret in (EMAIL, PHONE, "friend@example.com", partner["api_key"], program["publishable_key"],
                   partner["webhook_secrets"]["events"], api.operator_key):
        assert secret not in text


def test_scrubber_masks_what_slips_into_messages() -> None:
    text = scrub(f"failed for {EMAIL} / {PHONE} with srf_pk_abcdef123 and whsec_c2VjcmV0")
    assert EMAIL not in text and PHONE not in text
    assert "srf_pk_abcdef123" not in text and "whsec_c2VjcmV0" not in text


def test_scrubber_leaves_ids_and_timestamps_searchable() -> None:
    message_id = "msg_06e3b1234567890b65"
    text = scrub(f"sent {message_id} at 2026-12-03T10:00:00Z to +7 916 123-45-67 and tel:89161234567")
    assert message_id in text and "2026-12-03T10:00:00Z" in text
    assert "916 123-45-67" not in text and "89161234567" not in text

"""Contracts of the ports the platform webhooks and the CRM fetch use (``services.platform_intake``,
``services.crm_fetch``), on the in-memory fakes and on DynamoDB/SQS under moto (the ``impl`` fixture of
``test_ports``): the partner's program by its id alone, the integration log, the acknowledgement of a CRM
event id and the fetch queue."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.errors import NotFound
from chalicelib.store import keys
from chalicelib.store.integrations import ACK_TTL_HOURS, LOG_TTL_DAYS
from tests import ports_support as support
from tests.contract.test_ports import NOW, PID, Impl, impl  # noqa: F401 (the fixture)


def test_a_partners_program_is_found_by_the_partner_id_alone(impl: Impl) -> None:  # noqa: F811
    from chalicelib.store.tenancy import PartnerLocatorItem

    pk, sk = keys.partner_locator("ptn_loc")
    impl.seed(support.partner(PID, "ptn_loc"), PartnerLocatorItem(PK=pk, SK=sk, program_id=PID, partner_id="ptn_loc"))
    assert impl.ports.programs.partner_program("ptn_loc") == PID
    with pytest.raises(NotFound):
        impl.ports.programs.partner_program("ptn_unknown")


def test_a_log_entry_is_appended_newest_first_cut_to_500_characters_and_expires(impl: Impl) -> None:  # noqa: F811
    logs = impl.ports.integrations
    logs.add_log(PID, "ptn_1", "hubspot", "ilog_1", code="crm_auth_failed", message="refused", object_id="42", at=NOW)
    logs.add_log(PID, "ptn_1", "hubspot", "ilog_2", code="crm_bad_response", message="x" * 600, object_id=None,
                 at=NOW + timedelta(seconds=1))
    logs.add_log(PID, "ptn_1", "amocrm", "ilog_3", code="crm_auth_failed", message="other", object_id=None, at=NOW)
    page = logs.log(PID, "ptn_1", "hubspot", 10, None)
    assert [(e.code, len(e.message), e.object_id) for e in page.items] == [("crm_bad_response", 500, None),
                                                                           ("crm_auth_failed", 7, "42")]
    assert page.next_cursor is None and page.items[1].at == NOW
    assert int(page.items[1].expires_at_epoch) == int((NOW + timedelta(days=LOG_TTL_DAYS)).timestamp())


def test_an_event_id_is_acknowledged_once_until_it_expires_or_is_forgotten(impl: Impl) -> None:  # noqa: F811
    acks = impl.ports.integrations
    assert acks.acknowledge(PID, "ptn_1", "hubspot", "evt-1", NOW) is True
    assert acks.acknowledge(PID, "ptn_1", "hubspot", "evt-1", NOW + timedelta(hours=ACK_TTL_HOURS - 1)) is False
    assert acks.acknowledge(PID, "ptn_1", "hubspot", "evt-2", NOW) is True  # another event
    assert acks.acknowledge(PID, "ptn_1", "bitrix24", "evt-1", NOW) is True  # another platform
    assert acks.acknowledge(PID, "ptn_2", "hubspot", "evt-1", NOW) is True  # another partner
    # Expired (before DynamoDB's TTL sweep removes the marker): counts as new.
    assert acks.acknowledge(PID, "ptn_1", "hubspot", "evt-1", NOW + timedelta(hours=ACK_TTL_HOURS + 1)) is True
    acks.forget_ack(PID, "ptn_1", "hubspot", "evt-2")
    assert acks.acknowledge(PID, "ptn_1", "hubspot", "evt-2", NOW) is True
    acks.forget_ack(PID, "ptn_1", "hubspot", "never-acknowledged")  # nothing to undo: no error


def _configure_queue(target: Impl, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A configured queue; returns how to read what it holds (oldest first)."""
    if target.kind == "fake":
        queue: Any = target.ports.crm_queue
        queue.configured = True
        return lambda: list(queue.messages)
    from chalicelib import aws
    from tests.platform_support import crm_queue

    url = crm_queue(monkeypatch)

    def read() -> list[dict[str, Any]]:
        reply = aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [json.loads(m["Body"]) for m in reply.get("Messages", [])]

    return read


def test_the_fetch_queue_needs_a_configured_queue_and_keeps_messages_in_order(
        impl: Impl, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    queue = impl.ports.crm_queue
    if impl.kind == "dynamo":
        # Nothing configured, whatever an earlier test left in the environment (Chalice's test client copies the
        # stage's environment variables, the queue's name among them, into os.environ).
        from chalicelib import config

        monkeypatch.delenv("SARAFAN_CRM_FETCH_QUEUE_URL", raising=False)
        config.reset_settings()
    assert queue.enabled() is False
    with pytest.raises(Exception):  # noqa: B017 (nothing is configured: the send fails, nothing is lost silently)
        queue.send({"v": 1})
    read = _configure_queue(impl, monkeypatch)
    assert queue.enabled() is True
    queue.send({"v": 1, "object_id": "1"})
    queue.send({"v": 1, "object_id": "2", "label": "Сделка"})
    assert read() == [{"v": 1, "object_id": "1"}, {"v": 1, "object_id": "2", "label": "Сделка"}]

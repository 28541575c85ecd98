"""Helpers for the ledger/rewards/redemption tests (no tests here).

* ``Shop``: a program with a partner and a rules document, sending signed canonical events.
* Concurrency tests use ``concurrent_requests`` (tests/conftest.py) to be meaningful in-process.
  moto's DynamoDB backend has no locking (``transact_write_items`` even restores a deep copy of
  the whole table on failure), so two threads can interleave inside one request, which real
  DynamoDB never does. Serialising each moto *request* gives DynamoDB's per-request atomicity
  while our own read → decide → conditional-write sequences still interleave freely between
  requests. Chalice keeps ``app.current_request`` on the app object; the fixture makes it
  thread-local so parallel ``chalice.test.Client`` calls don't see each other's request.
* ``check_invariants``: balance == sum of entries, nothing negative, pending matches.
"""

from __future__ import annotations

import threading
from datetime import datetime
from itertools import count
from typing import Any

from chalicelib.domain import clock
from chalicelib.domain.rewards.examples import load_example_doc
from chalicelib.store import keys
from chalicelib.store.db import Entity
from chalicelib.store.ledger import BalanceItem, LedgerEntryItem
from tests.support import ApiClient, Reply

_ids = count(1)
_id_lock = threading.Lock()


def next_id() -> int:
    with _id_lock:
        return next(_ids)


class Shop:
    def __init__(self, api: ApiClient, rules: dict[str, Any] | str | None = None, partners: int = 1,
                 **program_fields: Any) -> None:
        self.api = api
        self.program = api.create_program(**program_fields)
        self.pid: str = self.program["program_id"]
        self.partners = [api.create_partner(self.pid, name=f"P{i}") for i in range(partners)]
        self.partner = self.partners[0]
        if rules is not None:
            doc = load_example_doc(rules) if isinstance(rules, str) else rules
            reply = api.put(f"/v1/programs/{self.pid}/rules", doc)
            assert reply.status == 200, reply.body
            self.rules_version = reply.body["version"]

    # -- events -------------------------------------------------------------------

    def send_raw(self, event: dict[str, Any], partner: dict[str, Any] | None = None) -> Reply:
        return self.api.send_event(partner or self.partner, event)

    def send(self, event: dict[str, Any], partner: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = self.send_raw(event, partner)
        assert reply.status == 200, reply.body
        return reply.body  # type: ignore[no-any-return]

    def signup(self, customer: str, code: str | None = None, at: str = "2026-01-10T10:00:00Z",
               partner: dict[str, Any] | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {"type": "member.signup", "occurred_at": at,
                                 "object": {"type": "customer", "id": customer},
                                 "customer": {"id": customer, "email": f"{customer}@example.com"}}
        if code:
            event["referral"] = {"code": code}
        return self.send(event, partner)

    def member(self, customer: str, code: str | None = None, **kw: Any) -> dict[str, Any]:
        """Sign a customer up; returns ``{"member_id", "code"}``."""
        return self.signup(customer, code, **kw)["member"]  # type: ignore[no-any-return]

    def chain(self, depth: int, prefix: str = "c") -> list[dict[str, Any]]:
        """``depth + 1`` members, each referred by the previous one: [root, ..., leaf]."""
        members = [self.member(f"{prefix}0")]
        for i in range(1, depth + 1):
            members.append(self.member(f"{prefix}{i}", members[-1]["code"]))
        return members

    @staticmethod
    def order_event(customer: str, order_id: str, total: int, at: str = "2026-01-15T10:00:00Z",
                    code: str | None = None, by_email: bool = False, **amounts: int) -> dict[str, Any]:
        who = {"email": f"{customer}@example.com"} if by_email else {"id": customer, "email": f"{customer}@example.com"}
        event: dict[str, Any] = {"type": "order.paid", "occurred_at": at, "object": {"type": "order", "id": order_id},
                                 "customer": who,
                                 "order": {"total": total, "currency": "RUB", **amounts}}
        if code:
            event["referral"] = {"code": code}
        return event

    def order(self, customer: str, order_id: str, total: int, **kw: Any) -> dict[str, Any]:
        partner = kw.pop("partner", None)
        return self.send(self.order_event(customer, order_id, total, **kw), partner)

    @staticmethod
    def refund_event(order_id: str, amount: int, refund_id: str | None = None,
                     at: str = "2026-01-16T10:00:00Z") -> dict[str, Any]:
        return {"type": "order.refunded", "occurred_at": at,
                "object": {"type": "refund", "id": refund_id or f"r-{order_id}-{next_id()}"},
                "refund": {"amount": amount, "currency": "RUB", "order_id": order_id}}

    def refund(self, order_id: str, amount: int, refund_id: str | None = None, **kw: Any) -> dict[str, Any]:
        partner = kw.pop("partner", None)
        return self.send(self.refund_event(order_id, amount, refund_id, **kw), partner)

    def cancel_order(self, order_id: str, at: str = "2026-01-16T10:00:00Z") -> dict[str, Any]:
        return self.send({"type": "order.cancelled", "occurred_at": at, "object": {"type": "order", "id": order_id}})

    # -- reads --------------------------------------------------------------------

    def balance(self, member_id: str, key: str | None = "operator") -> dict[str, Any]:
        reply = self.api.get(f"/v1/programs/{self.pid}/members/{member_id}/balance", key=key)
        assert reply.status == 200, reply.body
        return reply.body  # type: ignore[no-any-return]

    def ledger(self, member_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            path = f"/v1/programs/{self.pid}/members/{member_id}/ledger?limit=50"
            reply = self.api.get(path + (f"&cursor={cursor}" if cursor else ""))
            assert reply.status == 200, reply.body
            items += reply.body["items"]
            cursor = reply.body["next_cursor"]
            if not cursor:
                return items

    def redeem(self, member_id: str, points: int, key: str, partner_key: str | None = None,
               **body: Any) -> Reply:
        return self.api.post(f"/v1/programs/{self.pid}/members/{member_id}/redemptions", {"points": points, **body},
                             key=partner_key or self.partner["api_key"], headers={"Idempotency-Key": key})

    def release(self, at: datetime) -> dict[str, Any]:
        from chalicelib.jobs import release

        return release.run(at)


def check_invariants(pid: str, member_id: str) -> dict[str, int]:
    """Ledger invariants for one member, straight from the table; returns the balance."""
    pk, prefix = keys.ledger_prefix(pid, member_id)
    entries = [e for e in LedgerEntryItem.query(pk, LedgerEntryItem.SK.startswith(prefix), consistent_read=True)
               if isinstance(e, LedgerEntryItem)]
    try:
        item = BalanceItem.get(*keys.balance(pid, member_id), consistent_read=True)
        bal = {k: int(getattr(item, k) or 0) for k in ("available", "pending", "owed", "held", "lifetime_earned",
                                                       "lifetime_spent")}
    except BalanceItem.DoesNotExist:
        bal = dict.fromkeys(("available", "pending", "owed", "held", "lifetime_earned", "lifetime_spent"), 0)
    total = sum(int(e.points) for e in entries)
    assert bal["available"] + bal["pending"] + bal["held"] - bal["owed"] == total, (bal, total)
    held = sum(e.net_points for e in entries if e.kind == "reward" and e.status == "held")
    assert bal["held"] == held, (bal, held)
    pending = sum(e.net_points for e in entries if e.kind == "reward" and e.status == "pending")
    assert bal["pending"] == pending, (bal, pending)
    assert bal["available"] >= 0 and bal["pending"] >= 0 and bal["owed"] >= 0, bal
    for e in entries:
        if e.kind == "reward":
            assert 0 <= int(e.reversed_points or 0) <= int(e.points)
    return bal


def all_member_ids(pid: str) -> list[str]:
    from chalicelib.store.db import raw_client

    ids = set()
    paginator = raw_client().get_paginator("scan")  # test-only inspection
    for page in paginator.paginate(TableName=Entity.Meta.table_name):
        for item in page["Items"]:
            if item.get("entity", {}).get("S") == "member" and item["program_id"]["S"] == pid:
                ids.add(item["member_id"]["S"])
    return sorted(ids)


def utc(text: str) -> datetime:
    return clock.parse_iso(text)


# --------------------------------------------------------------------------- concurrency fixtures






def parallel(calls: list[Any]) -> list[Any]:
    """Run zero-argument callables at the same time (released together by a barrier)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results

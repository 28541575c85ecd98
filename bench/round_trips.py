#!/usr/bin/env python3
"""DynamoDB round trips per event type, counted (not a test). Run: ``.venv/bin/python bench/round_trips.py``.

Every DynamoDB API call the app makes goes through one botocore client (PynamoDB's shared
connection); a ``before-call.dynamodb`` hook counts them by operation. The configuration cache
(partner, program, rules) is warmed first, as on a warm Lambda, then each measured request is
sent through ``chalice.test.Client`` against moto in-process.

The headline case: ``order.paid`` by a referred member's first order with cashback, a
double-sided friend/referrer bonus and one commission per upline level (chain depth 1..5), with
the level-1 referrer having 1 or 10,000 referrals. Target: at most 3 round trips (BatchGetItem,
BatchGetItem, TransactWriteItems), independent of depth and referral count. The transaction holds
no outbox message: the members' messages (``points_earned`` ...) are derived from the ledger
entries by the table's stream consumer, whose writes are the "stream consumer" rows: after a
first order at every chain depth 1..5 (all handlers), per handler module at depth 3 and after
that order's partial refund. The stream rows deliver one member at a time
(``notify.sources.MAX_PARALLEL = 1``): the meter follows one call at a time, and in parallel the
figures varied between runs.

The table goes to stdout; the app's JSON log lines go to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from bench.capacity import Usage

OPERATOR_KEY = "srf_op_bench-operator-key-0123456789abcdefghijkl"
ENV = {
    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "eu-central-1",
    "AWS_REGION": "eu-central-1", "SARAFAN_STAGE": "test", "SARAFAN_TABLE": "sarafan-bench",
    "SARAFAN_SECRET_KEY": "bench-master-secret", "SARAFAN_OPERATOR_KEY_SHA256":
        hashlib.sha256(OPERATOR_KEY.encode()).hexdigest(),
    "SARAFAN_PUBLIC_BASE_URL": "https://srf.bench", "SARAFAN_SES_SENDER": "no-reply@sarafan.bench",
    # A warm Lambda: partner/program records stay cached for the whole run (moto makes the
    # 10,000-referral setup take longer than the default 30 s).
    "SARAFAN_CONFIG_CACHE_SECONDS": "3600",
}
MAX_DEPTH = 5


def rules_doc(depth: int) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"rate_bp": 500}},
        {"id": "friend-bonus", "trigger": {"event": "order.paid", "order": "first"}, "recipient": {"type": "friend"},
         "amount": {"points": 300}},
        {"id": "referrer-bonus", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}},
    ]
    rules += [{"id": f"level-{n}", "trigger": {"event": "order.paid"}, "recipient": {"type": "referrer", "level": n},
               "amount": {"rate_bp": 100 * (MAX_DEPTH + 1 - n)}} for n in range(1, depth + 1)]
    rules.append({"id": "signup-bonus", "trigger": {"event": "member.signup"}, "recipient": {"type": "self"},
                  "amount": {"points": 100}, "hold_days": 0})
    # No monthly cap (the headline case): a cap would add 2 WRU and 0.5 RRU per member paid.
    return {"max_depth": MAX_DEPTH, "hold_days": 14, "rules": rules}


class Bench:
    def __init__(self) -> None:
        import boto3
        from chalice.test import Client

        from app import app
        from bench.capacity import Meter
        from chalicelib.store.db import raw_client

        self.client = Client(app)
        self.meter = Meter(raw_client(), boto3.client("dynamodb"))
        self._seq = 0

    def call(self, method: str, path: str, body: Any = None, key: str = OPERATOR_KEY,
             headers: dict[str, str] | None = None) -> Any:
        all_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}", **(headers or {})}
        reply = getattr(self.client.http, method.lower())(path, headers=all_headers,
                                                            body=json.dumps(body) if body is not None else None)
        data = json.loads(reply.body) if reply.body else None
        assert reply.status_code < 300, (reply.status_code, data)
        return data

    def send(self, partner: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        from chalicelib.domain.webhook_signature import sign

        raw = json.dumps(event)
        self._seq += 1
        from chalicelib.services import ports

        msg_id, ts = f"bench_{self._seq}", int(ports.current().clock.now().timestamp())  # the service's clock
        reply = self.client.http.post(f"/v1/webhooks/{partner['partner_id']}/events", body=raw, headers={
            "Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(partner["webhook_secrets"]["events"], msg_id, ts, raw.encode())})
        data = json.loads(reply.body)
        assert reply.status_code == 200, data
        return data  # type: ignore[no-any-return]

    def measured(self, fn: Any) -> tuple[Any, Usage]:
        self.meter.take()
        started = time.perf_counter()
        result = fn()
        usage = self.meter.take()
        usage.seconds = time.perf_counter() - started
        return result, usage


def signup(customer: str, code: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                             "object": {"type": "customer", "id": customer}, "customer": {"id": customer}}
    if code:
        event["referral"] = {"code": code}
    return event


def order(customer: str, order_id: str, total: int = 1_000_000) -> dict[str, Any]:
    return {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z", "object": {"type": "order", "id": order_id},
            "customer": {"id": customer}, "order": {"total": total, "currency": "RUB"}}


def add_referrals(program_id: str, referrer: dict[str, Any], n: int, prefix: str) -> None:
    """Give ``referrer`` n referred members: their profile items (as the store serialises them) put straight
    into moto's in-memory table. Setup only, never measured: through the API, moto spends about 10 ms of CPU
    per item parsing and answering ``BatchWriteItem`` requests, which alone made the 10,000-referral run
    take over 10 minutes on a 2-core machine. The measured requests go through the app's client as always."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from chalicelib.services import ports
    from chalicelib.store.db import Entity
    from chalicelib.store.members import new_member, referrals_index

    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]].get_table(Entity.Meta.table_name)
    # Old referrals: their stream records were consumed long ago (the stream consumer row must not see them).
    shard, table.stream_shard = table.stream_shard, None
    now = ports.current().clock.now()
    try:
        for i in range(n):
            m = new_member(program_id, f"mbr_{prefix}bulk{i:06d}", f"{prefix}BULK{i:06d}", joined_at=now, joined_via="api")
            m.referrer_id = referrer["member_id"]
            m.ancestors = [referrer["member_id"]]
            referrals_index(m)
            table.put_item(m.serialize())
    finally:
        table.stream_shard = shard


def fmt(usage: Usage) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(usage.calls.items())) or "-"


#: The headline rows the goals are about (issue #10): a 3-level chain, first and repeat order.
FIRST_ORDER_ROW = "order.paid, chain depth 3, first order"
REPEAT_ORDER_ROW = "order.paid, chain depth 3, repeat order"
#: A depth-3 first order's first refund (6 postings to 4 members clawed back in part).
REFUND_ROW = "order.refunded (partial, all levels clawed back)"
REFUND_STREAM_ROW = "stream consumer after that refund"
SIGNALS_ROW = "order.paid with context signals (5 kinds), chain depth 3, first order"
WRU_TARGETS = {FIRST_ORDER_ROW: 30, REPEAT_ORDER_ROW: 20}


def provision() -> None:
    """Inside ``mock_aws``: the local run's engine, the table, a KMS key for sealed secrets, settings read.

    Settings are read now: ``chalice.test.Client`` swaps in .chalice/config.json's env while it runs."""
    import boto3

    from chalicelib import config
    from chalicelib.store.tables import create_table
    from infra import moto_tuning

    moto_tuning.apply()  # the engine of the local run and the tests
    create_table()
    os.environ["SARAFAN_KMS_KEY_ID"] = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    config.reset_settings()
    config.get_settings()


def logs_to_stderr() -> None:
    """The app's JSON log lines to stderr: stdout is the table."""
    import logging

    import app  # noqa: F401  (Chalice configures its app logger "sarafan" on import; ours replaces it)
    from chalicelib.logs import get_logger

    get_logger()  # the JSON handler, configured once (on stdout)
    for handler in logging.getLogger("sarafan").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=10_000, help="referrals of the big referrer")
    args = parser.parse_args(argv)
    os.environ.update(ENV)
    logs_to_stderr()
    from moto import mock_aws

    from chalicelib.domain import clock

    # Events happen on 2026-01-15; rewards stay pending (14 days) until the holding job runs.
    from tests.conftest import reset_process_state
    from tests.support import CLOCK

    reset_process_state()  # the production ports on the tests' clock (tests.support.CLOCK)
    CLOCK.set(clock.parse_iso("2026-01-16T12:00:00Z"))
    started = time.perf_counter()

    with mock_aws():
        provision()
        bench = Bench()
        rows: list[tuple[str, Usage]] = []
        program = bench.call("POST", "/v1/programs", {"name": "Bench", "settings": {"max_depth": MAX_DEPTH}})
        pid = program["program_id"]
        partner = bench.call("POST", f"/v1/programs/{pid}/partners", {"name": "Shop"})
        bench.call("PUT", f"/v1/programs/{pid}/rules", rules_doc(MAX_DEPTH))
        bench.send(partner, signup("warmup"))  # warm config caches (partner, program, rules)

        # Chains: root(level depth) ... leaf(level 1) <- buyer. Build the deepest once and hang buyers off it.
        chain = [bench.send(partner, signup("chain0"))["member"]]
        for i in range(1, MAX_DEPTH):
            chain.append(bench.send(partner, signup(f"chain{i}", chain[-1]["code"]))["member"])
        buyers = 0
        cases = [(d, "few") for d in range(1, MAX_DEPTH + 1)] + [(1, "big"), (MAX_DEPTH, "big")]
        for depth, size in cases:
            # The buyer's referrer is the chain member with depth-1 ancestors, so the buyer has ``depth``.
            referrer = chain[depth - 1]
            if size == "big":
                add_referrals(pid, referrer, args.referrals, prefix=f"d{depth}")
            buyers += 1
            buyer = f"buyer{buyers}"
            bench.send(partner, signup(buyer, referrer["code"]))
            reply, usage = bench.measured(lambda b=buyer, n=buyers: bench.send(partner, order(b, f"o-{n}")))
            paid = reply["rewards"]["postings"]
            if size == "few" and depth == 3:
                label = FIRST_ORDER_ROW
            else:
                referrals = f"{args.referrals:,}" if size == "big" else "<= 3"
                label = f"order.paid, chain depth {depth}, first order, level-1 referrer has {referrals} referrals"
            rows.append((f"{label} ({len(paid)} postings)", usage))
            if size == "few" and depth == 3:
                reply, usage = bench.measured(lambda b=buyer, n=buyers: bench.send(partner, order(b, f"o-{n}-2")))
                rows.append((f"{REPEAT_ORDER_ROW} ({len(reply['rewards']['postings'])} postings)", usage))

        # What the table's stream consumer then does for a first order (derived messages and their delivery,
        # analytics, settlement): not the webhook's cost, but the order's. Every depth in total, depth 3 per
        # handler module. Each depth's buyer hangs off a chain of its own (as bench/consumer_cost.py gives each
        # buyer): its uplines have had no order paid to them yet, so every row is a normal first order and no
        # upline's daily message count carries over from the rows before (delivery_report prints the outcomes).
        stream = StreamCost(bench)
        for depth in range(1, MAX_DEPTH + 1):
            code = None
            for level in range(depth):
                code = bench.send(partner, signup(f"d{depth}up{level}", code))["member"]["code"]
            buyers += 1
            bench.send(partner, signup(f"buyer{buyers}", code))
            stream.drain()  # everything before it (uncounted)
            bench.send(partner, order(f"buyer{buyers}", f"o-{buyers}"))
            if depth == 3:
                rows += stream.rows(STREAM_ROW)
            else:
                rows += stream.rows(stream_depth_row(depth))[:1]

        # The same first order carrying every fraud signal (issue #13): their pointers come in the first read.
        buyers += 1
        bench.send(partner, signup(f"buyer{buyers}", chain[2]["code"]))
        signals = {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (bench)", "device_id": "dev-bench-1",
                   "payment_fingerprint": "pm_fp_bench", "shipping_address": {"city": "Moscow", "address1": "Lenina 1"}}
        reply, usage = bench.measured(lambda b=f"buyer{buyers}", n=buyers: bench.send(
            partner, {**order(b, f"o-{n}"), "context": signals}))
        rows.append((f"{SIGNALS_ROW} ({len(reply['rewards']['postings'])} postings)", usage))

        rows += voucher_rows(bench)
        rows += tier_rows(bench)

        # Other event types, measured once each (warm).
        _, usage = bench.measured(lambda: bench.send(partner, signup("newbie", chain[-1]["code"])))
        rows.append(("member.signup with a referral code (+ signup bonus)", usage))
        refund: dict[str, Any] = {"type": "order.refunded", "occurred_at": "2026-01-16T10:00:00Z", "object": {"type": "refund", "id": "r1"},
                  "refund": {"amount": 100_000, "currency": "RUB", "order_id": f"o-{buyers}"}}
        stream.drain()  # everything before the refund (uncounted)
        _, usage = bench.measured(lambda: bench.send(partner, refund))
        rows.append((REFUND_ROW, usage))
        rows += stream.rows(REFUND_STREAM_ROW)  # its points_reversed messages are derived there
        _, usage = bench.measured(lambda: bench.send(partner, refund))
        rows.append(("order.refunded delivered again (duplicate)", usage))
        _, usage = bench.measured(lambda: bench.send(partner, order("buyer3", "o-3")))
        rows.append(("order.paid delivered again (duplicate)", usage))
        parked = {**refund, "object": {"type": "refund", "id": "r2"}, "refund": {**refund["refund"], "order_id": "late"}}
        _, usage = bench.measured(lambda: bench.send(partner, parked))
        rows.append(("order.refunded before its order (parked)", usage))
        _, usage = bench.measured(lambda: bench.send(partner, order("buyer1", "late")))
        rows.append(("order.paid with a parked refund applied", usage))
        cancel = {"type": "order.cancelled", "occurred_at": "2026-01-16T10:00:00Z", "object": {"type": "order", "id": "o-1"}}
        _, usage = bench.measured(lambda: bench.send(partner, cancel))
        rows.append(("order.cancelled (full clawback)", usage))

        member = chain[0]["member_id"]
        base = f"/v1/programs/{pid}/members/{member}"
        key = partner["api_key"]
        bench.call("GET", f"{base}/balance", key=key)  # warm the API key cache
        _, usage = bench.measured(lambda: bench.call("GET", base, key=key))
        rows.append(("GET member profile", usage))
        _, usage = bench.measured(lambda: bench.call("GET", f"{base}/balance", key=key))
        rows.append(("GET balance", usage))
        _, usage = bench.measured(lambda: bench.call("GET", f"{base}/ledger?limit=20", key=key))
        rows.append(("GET ledger page", usage))
        _, usage = bench.measured(lambda: bench.call("GET", f"{base}/redemptions/quote?order_amount=100000", key=key))
        rows.append(("GET redemption quote", usage))
        red, usage = bench.measured(lambda: bench.call("POST", f"{base}/redemptions", {"points": 10}, key=key,
                                                       headers={"Idempotency-Key": "k1"}))
        rows.append(("POST redemption", usage))
        _, usage = bench.measured(lambda: bench.call("POST", f"{base}/redemptions/{red['redemption_id']}/confirm",
                                                     key=key))
        rows.append(("POST redemption confirm", usage))
        _, usage = bench.measured(lambda: bench.call("POST", f"{base}/redemptions/{red['redemption_id']}/cancel",
                                                     key=key))
        rows.append(("POST redemption cancel", usage))

        rows += shopify_rows(bench, pid, partner, buyers)

        from chalicelib.jobs import release

        result, usage = bench.measured(lambda: release.run(clock.parse_iso("2026-02-01T00:00:00Z")))
        rows.append((f"holding job, first run (32 day buckets), {result['released']} entries released", usage))

    elapsed = time.perf_counter() - started
    report(rows, bench.meter.largest_transaction)
    delivery_report(stream)
    return verdict(rows, args.referrals, elapsed)


STREAM_ROW = "stream consumer after a depth-3 first order"


def stream_depth_row(depth: int) -> str:
    return STREAM_ROW.replace("depth-3", f"depth-{depth}")


def delivery_report(stream: StreamCost) -> None:
    """What became of the messages each "stream consumer" row delivered, by status and error: a message held
    (the member's daily cap reached, quiet hours) would make the row something other than a normal order's cost."""
    print("\nmessages delivered in the stream consumer rows (status, error: count; members):")
    for label, outcomes in stream.deliveries.items():
        statuses: dict[str, int] = {}
        for outcome in outcomes:
            key = f"{outcome.status}{f' {outcome.error}' if outcome.error else ''}"
            statuses[key] = statuses.get(key, 0) + 1
        members = len({outcome.member_id for outcome in outcomes})
        print(f"  {label}: {len(outcomes)} messages to {members} members; "
              + (", ".join(f"{key}: {count}" for key, count in sorted(statuses.items())) or "none"))


class StreamCost:
    """The table's one stream consumer run as Lambda would (``infra/local_stream.py``), metered per handler
    module (every handler's DynamoDB calls go through the app's client; the stream reads themselves are not
    billed as request units and are not counted)."""

    def __init__(self, bench: Bench) -> None:
        from app import app
        from chalicelib.notify import dispatcher, sources
        from infra.local_stream import StreamPoller

        # One member's deliveries at a time: the meter follows one call at a time, and in parallel the rows
        # varied between runs (97 vs 106 WRU after a first order, 65 vs 76 after a refund).
        sources.MAX_PARALLEL = 1
        self.bench = bench
        self.poller = StreamPoller(app.handler_map["table_stream"], log=lambda _m: None)
        self.by_module: dict[str, Usage] = {}
        dispatcher.wrap_handlers(self._metered)
        # What became of every message the counted drains delivered (sent, failed no_channel, held by the
        # daily cap ...), by row: a row that measured held deliveries would not be a normal order's cost.
        self.outcomes: list[Any] = []
        self.deliveries: dict[str, list[Any]] = {}
        sources.outcome_listeners.append(self.outcomes.append)

    def _metered(self, handler: Any) -> Any:
        from bench.capacity import Usage

        def run(records: Any) -> Any:
            outer = self.bench.meter.take()
            try:
                return handler(records)
            finally:
                used = self.bench.meter.take()
                self.by_module.setdefault(handler.__module__, Usage()).add(used)
                self.bench.meter.usage = outer
        run.__module__ = handler.__module__
        return run

    def drain(self) -> None:
        self.by_module = {}  # a fresh dict: the rows already taken keep their figures
        self.poller.drain()
        self.by_module = {}
        self.bench.meter.take()

    def rows(self, label: str) -> list[tuple[str, Usage]]:
        from bench.capacity import Usage

        self.by_module = {}
        self.outcomes.clear()
        self.poller.drain()
        self.bench.meter.take()
        self.deliveries[label] = list(self.outcomes)
        total = Usage()
        out = []
        for module, used in sorted(self.by_module.items()):
            out.append((f"{label}: {module.rsplit('.', 1)[-1]} handlers", used))
            total.add(used)
        return [(f"{label}, all handlers", total), *out]


VOUCHER_ROW = "order.paid with voucher rewards (pool offer of another partner, buyer + referrer)"


def voucher_rows(bench: Bench) -> list[tuple[str, Usage]]:
    """A coalition program: an order at the shop grants the buyer and the referrer a voucher from the cafe's
    pool (docs/coalition.md), plus cashback. The pool heads come in the first read, the candidate codes in the
    second, the issue in the one transaction."""
    program = bench.call("POST", "/v1/programs", {"name": "Bench coalition"})
    pid = program["program_id"]
    shop = bench.call("POST", f"/v1/programs/{pid}/partners", {"name": "Shop"})
    cafe = bench.call("POST", f"/v1/programs/{pid}/partners", {"name": "Cafe"})
    offers = f"/v1/programs/{pid}/partners/{cafe['partner_id']}/offers"
    offer = bench.call("POST", offers, {"name": "Coffee", "kind": "free_item", "item": "Cappuccino",
                                        "code_source": "pool", "low_pool_threshold": 10})
    bench.call("POST", f"{offers}/{offer['offer_id']}/codes", {"codes": [f"BENCH-{i:04d}" for i in range(200)]})
    ref = {"partner_id": cafe["partner_id"], "offer_id": offer["offer_id"], "fallback_points": 100}
    bench.call("PUT", f"/v1/programs/{pid}/rules", {"hold_days": 0, "rules": [
        {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"rate_bp": 500}},
        {"id": "coffee", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"}, "amount": {"offer": ref}},
        {"id": "referrer-coffee", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"offer": ref}},
    ]})
    bench.send(shop, order("vwarm", "v-0"))  # warm the caches (partner, program, rules)
    referrer = bench.send(shop, signup("vref"))["member"]
    bench.send(shop, signup("vbuyer", referrer["code"]))
    reply, usage = bench.measured(lambda: bench.send(shop, order("vbuyer", "v-1")))
    granted = len(reply["rewards"].get("vouchers", []))
    return [(f"{VOUCHER_ROW} ({granted} vouchers, {len(reply['rewards']['postings'])} postings)", usage)]


TIER_ROW = "order.paid with a voucher reward and a tier promotion"


def tier_rows(bench: Bench) -> list[tuple[str, Usage]]:
    """Member tiers (docs/coalition.md#tiers): a referred buyer's first order grants a voucher from the cafe's pool,
    cashback with a tier multiplier and a referrer bonus, and lifts the buyer's points earned over the silver
    threshold: the TIER items come in the second read, promotion, history and message in the one transaction."""
    tiers = {"metric": "points_earned", "period_months": 12, "levels": [
        {"id": "base", "threshold": 0}, {"id": "silver", "threshold": 500}, {"id": "gold", "threshold": 5000}]}
    program = bench.call("POST", "/v1/programs", {"name": "Bench tiers", "settings": {"tiers": tiers}})
    pid = program["program_id"]
    shop = bench.call("POST", f"/v1/programs/{pid}/partners", {"name": "Shop"})
    cafe = bench.call("POST", f"/v1/programs/{pid}/partners", {"name": "Cafe"})
    offers = f"/v1/programs/{pid}/partners/{cafe['partner_id']}/offers"
    offer = bench.call("POST", offers, {"name": "Coffee", "kind": "free_item", "item": "Cappuccino",
                                        "code_source": "pool"})
    bench.call("POST", f"{offers}/{offer['offer_id']}/codes", {"codes": [f"TIER-{i:04d}" for i in range(50)]})
    bench.call("PUT", f"/v1/programs/{pid}/rules", {"hold_days": 0, "rules": [
        {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"rate_bp": 500}, "tier_multipliers": {"silver": 12_500, "gold": 15_000}},
        {"id": "coffee", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"offer": {"partner_id": cafe["partner_id"], "offer_id": offer["offer_id"]}}},
        {"id": "referrer-bonus", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 300}},
    ]})
    bench.send(shop, order("twarm", "t-0", 10_000))  # warm the caches (partner, program, rules)
    referrer = bench.send(shop, signup("tref"))["member"]
    bench.send(shop, signup("tbuyer", referrer["code"]))
    reply, usage = bench.measured(lambda: bench.send(shop, order("tbuyer", "t-1")))  # 500 points: silver
    promoted = [c["to"] for c in (reply.get("tiers") or {}).get("changes", [])]
    granted = len(reply["rewards"].get("vouchers", []))
    assert promoted == ["silver"] and granted == 1, reply
    return [(f"{TIER_ROW} ({granted} voucher, promoted to {promoted[0]}, {len(reply['rewards']['postings'])} "
             f"postings)", usage)]


SHOPIFY_SECRET = "shpss_bench-0123456789abcdef"
SHOPIFY_ROW = "Shopify orders/paid, first order"
CANONICAL_ROW = "canonical order.paid, same order shape"


def shopify_rows(bench: Bench, pid: str, partner: dict[str, Any], n: int) -> list[tuple[str, Usage]]:
    """Shopify ``orders/paid`` vs the canonical ``order.paid`` of the same shape (a new customer's first order).

    Goal: the same round trips plus at most one read for the integration settings, which is then
    cached like partner records (so a warm container pays nothing extra).
    """
    import base64
    import hashlib as hashlib_
    import hmac

    fixture = json.loads((ROOT / "tests" / "fixtures" / "platforms" / "shopify" / "orders_paid.json").read_text())
    bench.call("PUT", f"/v1/programs/{pid}/partners/{partner['partner_id']}/integrations/shopify",
               {"settings": {"secret": SHOPIFY_SECRET, "shop_domain": "zerno.myshopify.com"}})
    rows: list[tuple[str, Usage]] = []

    def shopify_order(order_id: int, customer_id: int) -> dict[str, Any]:
        body = {**fixture["body"], "id": order_id, "currency": "RUB", "landing_site": None,
                "customer": {**fixture["body"]["customer"], "id": customer_id}, "email": f"s{customer_id}@example.com",
                "contact_email": None}
        raw = json.dumps(body).encode()
        signature = base64.b64encode(hmac.new(SHOPIFY_SECRET.encode(), raw, hashlib_.sha256).digest()).decode()
        reply = bench.client.http.post(f"/v1/webhooks/{partner['partner_id']}/shopify", body=raw, headers={
            **fixture["headers"], "X-Shopify-Hmac-Sha256": signature})
        data = json.loads(reply.body)
        assert reply.status_code == 200 and data["status"] == "processed", data
        return data  # type: ignore[no-any-return]

    _, usage = bench.measured(lambda: shopify_order(9_000_001, 8_000_001))
    rows.append((f"{SHOPIFY_ROW}, integration not cached yet", usage))
    _, usage = bench.measured(lambda: shopify_order(9_000_002, 8_000_002))
    rows.append((f"{SHOPIFY_ROW}, warm", usage))
    canonical = {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z", "object": {"type": "order", "id": "c-9"},
                 "customer": {"id": "8000003", "email": "s8000003@example.com"},
                 "order": {"total": 39_800, "subtotal": 38_800, "discount": 0, "shipping": 1_000, "currency": "RUB"}}
    _, usage = bench.measured(lambda: bench.send(partner, canonical))
    rows.append((f"{CANONICAL_ROW}, warm", usage))
    return rows


def report(rows: list[tuple[str, Usage]], largest_transaction: int) -> None:
    width = max(len(label) for label, _ in rows)
    print(f"{'request':<{width}}  round trips    WRU    RRU  items written  KB written  app ms  calls")
    print(f"{'-' * width}  -----------  -----  -----  -------------  ----------  ------  -----")
    for label, u in rows:
        print(f"{label:<{width}}  {u.round_trips:>11}  {u.wru:>5g}  {u.rru:>5g}  {u.items_written:>13}  "
              f"{u.bytes_written / 1024:>10.1f}  {u.app_seconds * 1000:>6.1f}  {fmt(u)}")
    print("(app ms: the request's wall time minus the time inside DynamoDB calls (moto) and the meter;"
          " WRU/RRU from the request and item bytes)")
    print(f"\nlargest transaction: {largest_transaction} items (DynamoDB limit 100)")
    for label, u in rows:
        if label.startswith((FIRST_ORDER_ROW, REPEAT_ORDER_ROW, REFUND_ROW, VOUCHER_ROW, TIER_ROW, SIGNALS_ROW)) \
                or label in (f"{stream_depth_row(3)}, all handlers", f"{REFUND_STREAM_ROW}, all handlers"):
            parts = ", ".join(f"{name} {units:g}" for name, units in u.wru_by_entity.most_common())
            sizes = ", ".join(f"{name} {size / 1024:.1f} KB" for name, size in u.bytes_by_entity.most_common())
            print(f"\n{label}: WRU by item: {parts}\n  bytes by item: {sizes}")
            for entity, size, units, index_units in sorted(u.writes, key=lambda w: (-w[2] - w[3], w[0])):
                print(f"    {entity:<16} {size:>6,} bytes  {units:>2} WRU  + {index_units} WRU index copies")
            for entity, size, units in sorted(u.checks, key=lambda c: (-c[2], c[0])):
                print(f"    {entity + ' check':<16} {size:>6,} bytes  {units:>2} WRU  (a transaction's ConditionCheck)")


def verdict(rows: list[tuple[str, Usage]], referrals: int, elapsed: float) -> int:
    import resource

    headline = [u.round_trips for label, u in rows if label.startswith("order.paid, chain")]
    ok = max(headline) <= 3
    by_label = {label: u for label, u in rows}
    canonical = by_label[f"{CANONICAL_ROW}, warm"].round_trips
    cold = by_label[f"{SHOPIFY_ROW}, integration not cached yet"].round_trips
    warm = by_label[f"{SHOPIFY_ROW}, warm"].round_trips
    shopify_ok = warm == canonical and cold <= canonical + 1
    ok &= shopify_ok
    print(f"Shopify orders/paid: {cold} round trips cold, {warm} warm; canonical order.paid {canonical} "
          f"(target: same + at most 1 for the integration settings: {'ok' if shopify_ok else 'MISSED'})")
    print(f"\norder.paid round trips: min {min(headline)}, max {max(headline)} (target <= 3)")
    signals = next(u for label, u in rows if label.startswith(SIGNALS_ROW))
    print(f"order.paid with context signals: {signals.round_trips} round trips, {signals.wru:g} WRU, "
          f"{signals.rru:g} RRU (target <= 3 round trips: {'ok' if signals.round_trips <= 3 else 'MISSED'})")
    voucher = next(u for label, u in rows if label.startswith(VOUCHER_ROW))
    ok &= voucher.round_trips <= 3
    print(f"order.paid with voucher rewards: {voucher.round_trips} round trips, {voucher.wru:g} WRU, "
          f"{voucher.rru:g} RRU (target <= 3 round trips: {'ok' if voucher.round_trips <= 3 else 'MISSED'})")
    tier = next(u for label, u in rows if label.startswith(TIER_ROW))
    ok &= tier.round_trips <= 3
    print(f"{TIER_ROW}: {tier.round_trips} round trips, {tier.wru:g} WRU, {tier.rru:g} RRU "
          f"(target <= 3 round trips: {'ok' if tier.round_trips <= 3 else 'MISSED'})")
    for label, u in rows:
        for row, target in WRU_TARGETS.items():
            if label.startswith(row):
                ok &= u.wru <= target
                print(f"{row}: {u.wru:g} WRU, {u.rru:g} RRU (target WRU <= {target}: "
                      f"{'ok' if u.wru <= target else 'MISSED'})")
    depths = [by_label[f"{stream_depth_row(d)}, all handlers"] for d in range(1, MAX_DEPTH + 1)]
    print("stream consumer after a first order by chain depth 1.." + str(MAX_DEPTH) + ": "
          + ", ".join(f"{u.wru:g}" for u in depths) + " WRU; "
          + ", ".join(f"{u.rru:g}" for u in depths) + " RRU")
    refund = by_label[REFUND_ROW]
    print(f"{REFUND_ROW}: {refund.round_trips} round trips, {refund.wru:g} WRU, {refund.rru:g} RRU "
          f"(+ {by_label[f'{REFUND_STREAM_ROW}, all handlers'].wru:g} WRU in the stream consumer)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nrun: {elapsed:.0f} s, peak memory {peak_mb:,.0f} MB, {referrals:,} referrals seeded per big referrer; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

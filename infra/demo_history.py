"""A few weeks of realistic demo history for the local run, so the dashboard has full charts at once.

Signed canonical events through the real webhook route and pipeline (the app in-process, the service clock
moved back to each event's time), for both demo partners: signups (some through friends' links, with UTM
sources), link clicks, leads, first and repeat orders, refunds and redemptions at checkout. Deterministic
(a fixed random seed). Runs before the HTTP server starts, so nobody sees the moved clock; the stream
consumer (analytics, notifications) reads the records when the event sources start.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

NAMES = ("Анна Петрова", "Борис Иванов", "Вера Смирнова", "Глеб Кузнецов", "Дарья Попова", "Егор Васильев",
         "Жанна Соколова", "Зоя Михайлова", "Илья Новиков", "Кира Фёдорова", "Лев Морозов", "Мария Волкова",
         "Никита Алексеев", "Ольга Лебедева", "Павел Семёнов", "Роза Егорова", "Семён Павлов", "Таня Козлова",
         "Ульяна Степанова", "Фёдор Николаев", "Юлия Орлова", "Яков Андреев", "Алина Макарова", "Денис Никитин")
SOURCES = ("telegram", "whatsapp", "vk", "instagram", "email")


def seed_history(demo: dict[str, Any], days: int = 21, seed: int = 12) -> dict[str, int]:
    from chalice.test import Client

    from app import app
    from chalicelib.domain import clock
    from chalicelib.domain.webhook_signature import sign
    from chalicelib.services import ports

    rng = random.Random(seed)
    client = Client(app)
    partners = demo["partners"]
    # The history's own clock, moved to each event's time: the wired ports with a ManualClock, for this run only.
    wired = ports.current()
    demo_clock = clock.ManualClock()
    ports.use(replace(wired, clock=demo_clock))
    end = wired.clock.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(days=days)
    counts = {"events": 0, "clicks": 0, "refunds": 0, "redemptions": 0}
    seq = [0]

    def at(day: int, hour: int) -> datetime:
        return start + timedelta(days=day, hours=hour, minutes=rng.randrange(60))

    def send(partner: dict[str, Any], event: dict[str, Any], when: datetime) -> dict[str, Any]:
        demo_clock.set(when)
        event["occurred_at"] = clock.iso(when)
        raw = json.dumps(event)
        seq[0] += 1
        msg_id, ts = f"msg_demo_{seq[0]}", int(when.timestamp())
        headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
                   "webhook-signature": sign(partner["webhook_secrets"]["events"], msg_id, ts, raw.encode())}
        reply = client.http.post(f"/v1/webhooks/{partner['partner_id']}/events", headers=headers, body=raw)
        counts["events"] += 1
        return json.loads(reply.body) if reply.status_code == 200 else {}

    def click(code: str, source: str, when: datetime) -> None:
        demo_clock.set(when)
        client.http.get(f"/r/{code}?utm_source={source}", headers={})
        counts["clicks"] += 1

    members: list[dict[str, Any]] = []  # {"customer", "code", "member_id", "partner"}
    orders: list[tuple[dict[str, Any], str, int]] = []
    try:
        for i, name in enumerate(NAMES):
            day = min(days - 1, int(i * days / len(NAMES)))
            partner = partners[i % len(partners)]
            customer = f"demo-{i:02d}"
            event: dict[str, Any] = {"type": "member.signup", "object": {"type": "customer", "id": customer},
                                     "customer": {"id": customer, "email": f"{customer}@example.com", "name": name}}
            referrer = rng.choice(members) if members and rng.random() < 0.6 else None
            if referrer:
                source = rng.choice(SOURCES)
                for _ in range(rng.randrange(1, 4)):
                    click(referrer["code"], source, at(day, 8))
                event["referral"] = {"code": referrer["code"],
                                     "utm": {"source": source, "medium": "referral", "campaign": "friends"}}
            reply = send(partner, event, at(day, 9))
            member = reply.get("member") or {}
            if not member:
                continue
            members.append({"customer": customer, "code": member["code"], "member_id": member["member_id"],
                            "partner": partner})
            if rng.random() < 0.25:  # a lead at the other partner (a consultation booked)
                other = partners[(i + 1) % len(partners)]
                send(other, {"type": "lead.created", "object": {"type": "lead", "id": f"L-{customer}"},
                             "customer": {"id": customer, "email": f"{customer}@example.com"}}, at(day, 11))
            purchases = rng.choice((0, 1, 1, 2, 3))
            for n in range(purchases):
                order_day = min(days - 1, day + 1 + n * rng.randrange(2, 6))
                shop = partners[rng.randrange(len(partners))]
                total = rng.randrange(40, 400) * 1000
                order_id = f"{customer}-{n}"
                send(shop, {"type": "order.paid", "object": {"type": "order", "id": order_id},
                            "customer": {"id": customer, "email": f"{customer}@example.com"},
                            "order": {"total": total, "currency": "RUB"}}, at(order_day, 13 + n))
                orders.append((shop, order_id, total))
        for shop, order_id, total in rng.sample(orders, k=min(3, len(orders))):
            send(shop, {"type": "order.refunded", "object": {"type": "refund", "id": f"r-{order_id}"},
                        "refund": {"amount": total, "currency": "RUB", "order_id": order_id}}, end - timedelta(days=1))
            counts["refunds"] += 1
        for member in members[:4]:
            demo_clock.set(end - timedelta(hours=3))
            partner = member["partner"]
            redeemed = client.http.post(
                f"/v1/programs/{demo['program_id']}/members/{member['member_id']}/redemptions",
                headers={"content-type": "application/json", "authorization": f"Bearer {partner['api_key']}",
                         "idempotency-key": f"demo-{member['member_id']}"},
                body=json.dumps({"points": 50, "order_id": f"redeem-{member['customer']}"}))
            counts["redemptions"] += int(redeemed.status_code in (200, 201))
    finally:
        ports.use(wired)
    counts["members"] = len(members)
    return counts

"""Scheduled jobs (EventBridge in AWS; ``infra/local_run.py`` drives them locally)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

jobs = Blueprint(__name__)


@jobs.schedule(Rate(10, unit=Rate.MINUTES), name="release_pending_points",
               description="Pending ledger entries whose holding period ended become available")
def release_pending_points(event: Any) -> dict[str, Any]:
    from chalicelib.jobs import release

    return release.run()


@jobs.schedule(Rate(1, unit=Rate.HOURS), name="expire_points",
               description="Points past the program's expiry_months expire, oldest first (expiry ledger entries)")
def expire_points(event: Any) -> dict[str, Any]:
    from chalicelib.jobs import expiry

    return expiry.run()


@jobs.schedule(Rate(1, unit=Rate.DAYS), name="review_tiers",
               description="Member tiers: members due for review (old months left the rolling period) are re-evaluated")
def review_tiers(event: Any) -> dict[str, Any]:
    from chalicelib.jobs import tiers

    return tiers.run()


@jobs.schedule(Rate(1, unit=Rate.HOURS), name="birthday_gifts",
               description="The program's birthday gift, once per member and year (each day granted once; "
                           "hourly so a day cut short resumes and time zones start their day on time)")
def birthday_gifts(event: Any) -> dict[str, Any]:
    from chalicelib.jobs import birthdays

    return birthdays.run()


@jobs.schedule(Rate(1, unit=Rate.MINUTES), name="send_partner_webhooks",
               description="Outgoing partner webhooks: POST the due deliveries, signed; retries with backoff")
def send_partner_webhooks(event: Any) -> dict[str, Any]:
    from chalicelib.jobs import partner_webhooks

    return partner_webhooks.run()

"""Outgoing partner webhooks: SSRF check, retry schedule, Standard Webhooks signing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from chalicelib.domain import partner_hooks as ph
from chalicelib.domain.webhook_signature import generate_secret


def _resolver(table: dict[str, list[str]]):
    def resolve(host: str):
        if host not in table:
            raise OSError("nxdomain")
        return table[host]

    return resolve


PUBLIC = _resolver({"hooks.partner.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})


def test_public_https_target_is_accepted_and_normalised():
    assert ph.check_target("https://Hooks.Partner.Example/in", PUBLIC) == "https://hooks.partner.example/in"


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.partner.example/in",  # not https
        "ftp://hooks.partner.example/in",
        "https://127.0.0.1/in",  # loopback
        "https://10.1.2.3/in",  # private
        "https://192.168.0.1/in",
        "https://172.16.5.5/in",
        "https://169.254.169.254/latest/meta-data",  # link-local (instance metadata)
        "https://224.0.0.1/in",  # multicast
        "https://0.0.0.0/in",  # unspecified
        "https://[::1]/in",  # IPv6 loopback
        "https://[fe80::1]/in",  # IPv6 link-local
        "https://[fd00::1]/in",  # IPv6 unique local
        "https://[::ffff:127.0.0.1]/in",  # IPv4-mapped loopback
        "https://user:pw@hooks.partner.example/in",  # credentials
        "https://nowhere.example/in",  # does not resolve
    ],
)
def test_unsafe_targets_are_rejected(url):
    with pytest.raises(ph.UnsafeTarget):
        ph.check_target(url, PUBLIC)


def test_a_name_resolving_to_a_private_address_is_rejected_even_with_a_public_one():
    rebind = _resolver({"evil.example": ["93.184.216.34", "10.0.0.7"]})
    with pytest.raises(ph.UnsafeTarget, match="private"):
        ph.check_target("https://evil.example/hook", rebind)
    internal = _resolver({"internal.example": ["fd12:3456::1"]})
    with pytest.raises(ph.UnsafeTarget):
        ph.check_target("https://internal.example/hook", internal)


def test_local_run_setting_allows_http_and_loopback():
    assert ph.check_target("http://127.0.0.1:8000/hook", PUBLIC, allow_any=True) == "http://127.0.0.1:8000/hook"


def test_event_types_are_validated():
    assert ph.validate_event_types(["tier.changed", "reward.posted", "tier.changed"]) == [
        "tier.changed",
        "reward.posted",
    ]
    with pytest.raises(ValueError):
        ph.validate_event_types(["order.paid"])
    with pytest.raises(ValueError):
        ph.validate_event_types([])


def test_backoff_spans_at_least_24_hours_then_gives_up():
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    first = clock
    attempts = 0
    while True:
        attempts += 1  # an attempt at `clock` failed
        nxt = ph.next_attempt_at(attempts, clock)
        if nxt is None:
            break
        assert nxt > clock
        clock = nxt
    assert attempts == ph.MAX_ATTEMPTS == 8
    assert clock - first >= timedelta(hours=24)
    delays = list(ph.RETRY_DELAYS)
    assert delays == sorted(delays)


def test_signed_message_verifies_with_the_standardwebhooks_library():
    secret = generate_secret()
    body = ph.message_body("msg_1", "reward.posted", "2026-01-01T00:00:00Z", {"points": 300})
    ts = int(datetime.now(UTC).timestamp())
    headers = ph.signed_request(secret, "msg_1", ts, body)
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "reward.posted"
    assert payload["data"] == {"points": 300}
    tampered = body.replace(b"300", b"900")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)

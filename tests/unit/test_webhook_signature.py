"""Standard Webhooks verification/signing, checked against the official library."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chalicelib.domain.errors import Unauthorized
from chalicelib.domain.webhook_signature import (
    CODE_INVALID,
    CODE_MISSING_HEADERS,
    CODE_STALE_TIMESTAMP,
    VerifiedWebhook,
    check_headers,
    decode_secret,
    generate_secret,
    sign,
    signature_headers,
    verify,
)

# The example published with the Standard Webhooks spec / reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_790_000_000
BODY = json.dumps(
    {
        "type": "order.paid",
        "occurred_at": "2026-11-23T10:00:00Z",
        "object": {"type": "order", "id": "100234"},
        "customer": {"id": "c-77", "email": "anna@example.ru"},
        "order": {"total": 249000, "currency": "RUB"},
    },
    ensure_ascii=False,
).encode()


def headers_for(secret: str, msg_id: str = "msg_1", ts: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return signature_headers(secret, msg_id, ts, body)


def code_of(excinfo: pytest.ExceptionInfo[Unauthorized]) -> str:
    return excinfo.value.code


# --------------------------------------------------------------------------- spec vector


def test_sign_matches_published_test_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_verify_accepts_published_test_vector() -> None:
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": SPEC_SIGNATURE}
    result = verify([SPEC_SECRET], headers, SPEC_BODY.encode(), now=SPEC_TS + 10)
    assert result == VerifiedWebhook(msg_id=SPEC_ID, timestamp=SPEC_TS, secret_index=0)


def test_official_library_agrees_on_test_vector() -> None:
    ts = datetime.fromtimestamp(SPEC_TS, tz=UTC)
    assert Webhook(SPEC_SECRET).sign(SPEC_ID, ts, SPEC_BODY) == SPEC_SIGNATURE


# --------------------------------------------------------------------------- interop


def test_our_signature_verifies_with_official_library() -> None:
    secret = generate_secret()
    now = int(time.time())  # the library reads the wall clock itself
    headers = headers_for(secret, "msg_ours", now)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_official_library_signature_verifies_with_ours() -> None:
    secret = generate_secret()
    ts = datetime.fromtimestamp(NOW, tz=UTC)
    signature = Webhook(secret).sign("msg_theirs", ts, BODY.decode())
    headers = {"webhook-id": "msg_theirs", "webhook-timestamp": str(NOW), "webhook-signature": signature}
    assert verify([secret], headers, BODY, now=NOW).msg_id == "msg_theirs"


def test_official_library_rejects_our_signature_with_other_secret() -> None:
    headers = headers_for(generate_secret(), "msg_x", int(time.time()))
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


@settings(max_examples=50, deadline=None)
@given(
    body=st.text(max_size=300),
    msg_id=st.from_regex(r"^msg_[A-Za-z0-9]{1,30}$", fullmatch=True),
    key=st.binary(min_size=24, max_size=64),
    ts=st.integers(min_value=1_000_000_000, max_value=4_000_000_000),
)
def test_property_signatures_identical_to_official_library(body: str, msg_id: str, key: bytes, ts: int) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    theirs = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body)
    assert sign(secret, msg_id, ts, body) == theirs
    assert sign(secret, msg_id, ts, body.encode()) == theirs


# --------------------------------------------------------------------------- acceptance


def test_valid_signature_with_bytes_and_str_body() -> None:
    secret = generate_secret()
    headers = headers_for(secret)
    assert verify([secret], headers, BODY, now=NOW).timestamp == NOW
    assert verify(secret, headers, BODY.decode(), now=NOW).msg_id == "msg_1"


def test_header_lookup_is_case_insensitive() -> None:
    secret = generate_secret()
    headers = {k.upper() if i % 2 else k.title(): v for i, (k, v) in enumerate(headers_for(secret).items())}
    assert verify([secret], headers, BODY, now=NOW).msg_id == "msg_1"


def test_several_signatures_one_valid() -> None:
    secret = generate_secret()
    good = sign(secret, "msg_1", NOW, BODY)
    junk = sign(generate_secret(), "msg_1", NOW, BODY)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": f"v1a,AAAA {junk} v2,{good.split(',')[1]} {good}",
    }
    assert verify([secret], headers, BODY, now=NOW).secret_index == 0


def test_rotation_overlap_accepts_old_and_new_secret() -> None:
    old, new = generate_secret(), generate_secret()
    accepted = [new, old]
    assert verify(accepted, headers_for(old), BODY, now=NOW).secret_index == 1
    assert verify(accepted, headers_for(new), BODY, now=NOW).secret_index == 0
    # A sender signing with both during its own switch-over is fine too.
    both = signature_headers([old, new], "msg_1", NOW, BODY)
    assert len(both["webhook-signature"].split(" ")) == 2
    assert verify([new], both, BODY, now=NOW).secret_index == 0


def test_timestamp_within_tolerance_edges() -> None:
    secret = generate_secret()
    headers = headers_for(secret)
    verify([secret], headers, BODY, now=NOW + 300)
    verify([secret], headers, BODY, now=NOW - 300)


def test_unprefixed_and_unpadded_secret_decodes_like_library() -> None:
    key = b"k" * 25  # base64 of 25 bytes needs padding
    encoded = base64.b64encode(key).decode().rstrip("=")
    assert decode_secret(encoded) == key
    assert decode_secret("whsec_" + encoded) == key


# --------------------------------------------------------------------------- rejections


def test_tampered_body_rejected() -> None:
    secret = generate_secret()
    with pytest.raises(Unauthorized) as excinfo:
        verify([secret], headers_for(secret), BODY.replace(b"249000", b"949000"), now=NOW)
    assert code_of(excinfo) == CODE_INVALID


def test_tampered_id_or_timestamp_rejected() -> None:
    secret = generate_secret()
    headers = headers_for(secret)
    with pytest.raises(Unauthorized) as excinfo:
        verify([secret], {**headers, "webhook-id": "msg_2"}, BODY, now=NOW)
    assert code_of(excinfo) == CODE_INVALID
    with pytest.raises(Unauthorized) as excinfo:
        verify([secret], {**headers, "webhook-timestamp": str(NOW + 1)}, BODY, now=NOW)
    assert code_of(excinfo) == CODE_INVALID


def test_wrong_secret_rejected() -> None:
    with pytest.raises(Unauthorized) as excinfo:
        verify([generate_secret()], headers_for(generate_secret()), BODY, now=NOW)
    assert code_of(excinfo) == CODE_INVALID
    assert excinfo.value.status == 401


def test_retired_secret_rejected_after_overlap() -> None:
    old, new = generate_secret(), generate_secret()
    with pytest.raises(Unauthorized):
        verify([new], headers_for(old), BODY, now=NOW)


@pytest.mark.parametrize("offset", [301, 3600, 10**6])
def test_stale_timestamp_rejected(offset: int) -> None:
    secret = generate_secret()
    with pytest.raises(Unauthorized) as excinfo:
        verify([secret], headers_for(secret, ts=NOW - offset), BODY, now=NOW)
    assert code_of(excinfo) == CODE_STALE_TIMESTAMP
    assert "too old" in excinfo.value.message


@pytest.mark.parametrize("offset", [301, 3600])
def test_future_timestamp_rejected(offset: int) -> None:
    secret = generate_secret()
    with pytest.raises(Unauthorized) as excinfo:
        verify([secret], headers_for(secret, ts=NOW + offset), BODY, now=NOW)
    assert code_of(excinfo) == CODE_STALE_TIMESTAMP
    assert "future" in excinfo.value.message


def test_tolerance_is_configurable() -> None:
    secret = generate_secret()
    headers = headers_for(secret, ts=NOW - 60)
    verify([secret], headers, BODY, now=NOW, tolerance_seconds=60)
    with pytest.raises(Unauthorized) as excinfo:
        verify([secret], headers, BODY, now=NOW, tolerance_seconds=30)
    assert code_of(excinfo) == CODE_STALE_TIMESTAMP


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_rejected(missing: str) -> None:
    secret = generate_secret()
    headers = {k: v for k, v in headers_for(secret).items() if k != missing}
    with pytest.raises(Unauthorized) as excinfo:
        verify([secret], headers, BODY, now=NOW)
    assert code_of(excinfo) == CODE_MISSING_HEADERS
    assert excinfo.value.details == {"missing": [missing]}


def test_empty_headers_rejected() -> None:
    with pytest.raises(Unauthorized) as excinfo:
        verify([generate_secret()], {"webhook-id": "", "webhook-timestamp": "", "webhook-signature": ""}, BODY, now=NOW)
    assert code_of(excinfo) == CODE_MISSING_HEADERS
    assert len(excinfo.value.details["missing"]) == 3


@pytest.mark.parametrize(
    "signature",
    [
        "garbage",
        "v1,***not-base64***",
        "v1,",
        "v1",
        ",,,",
        "v1,c2hvcnQ=",  # valid base64, wrong length
        "v2," + base64.b64encode(b"x" * 32).decode(),
        "🙂 v1,%%%",
        "v1," + "A" * 5000,
    ],
)
def test_garbage_signature_header_rejected(signature: str) -> None:
    secret = generate_secret()
    headers = {**headers_for(secret), "webhook-signature": signature}
    with pytest.raises(Unauthorized) as excinfo:
        verify([secret], headers, BODY, now=NOW)
    assert code_of(excinfo) == CODE_INVALID


@pytest.mark.parametrize("timestamp", ["soon", "1.5e9", "-1614265330", "0x5f", "1614265330.0", "1" * 20])
def test_malformed_timestamp_rejected(timestamp: str) -> None:
    secret = generate_secret()
    headers = {**headers_for(secret), "webhook-timestamp": timestamp}
    with pytest.raises(Unauthorized) as excinfo:
        verify([secret], headers, BODY, now=NOW)
    assert code_of(excinfo) == CODE_INVALID


@pytest.mark.parametrize("msg_id", ["has space", "x" * 300, "tab\there"])
def test_malformed_id_rejected(msg_id: str) -> None:
    secret = generate_secret()
    headers = headers_for(secret, msg_id=msg_id)
    with pytest.raises(Unauthorized) as excinfo:
        verify([secret], headers, BODY, now=NOW)
    assert code_of(excinfo) == CODE_INVALID


# --------------------------------------------------------------------------- secrets


def test_generate_secret_format_and_randomness() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(decode_secret(secret)) == 32
    assert len(decode_secret(generate_secret(24))) == 24
    assert generate_secret() != generate_secret()
    with pytest.raises(ValueError):
        generate_secret(16)


@pytest.mark.parametrize("bad", ["whsec_", "whsec_!!!notbase64", "", b""])
def test_bad_configured_secret_is_a_config_error(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        decode_secret(bad)


def test_no_secrets_is_a_config_error() -> None:
    with pytest.raises(ValueError):
        verify([], headers_for(generate_secret()), BODY, now=NOW)


# --------------------------------------------------------------------------- check_headers (pre-read gate)


def test_check_headers_passes_fresh_well_formed_headers_without_a_secret() -> None:
    check_headers(headers_for(generate_secret()), now=NOW)
    # The signature itself is not checked here: that needs the secret.
    check_headers({**headers_for(generate_secret()), "webhook-signature": "v1,AAAA"}, now=NOW)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"webhook-id": ""}, CODE_MISSING_HEADERS),
        ({"webhook-timestamp": str(NOW - 301)}, CODE_STALE_TIMESTAMP),
        ({"webhook-timestamp": str(NOW + 301)}, CODE_STALE_TIMESTAMP),
        ({"webhook-timestamp": "later"}, CODE_INVALID),
        ({"webhook-id": "has space"}, CODE_INVALID),
    ],
)
def test_check_headers_rejections(change: dict[str, str], code: str) -> None:
    with pytest.raises(Unauthorized) as excinfo:
        check_headers({**headers_for(generate_secret()), **change}, now=NOW)
    assert code_of(excinfo) == code

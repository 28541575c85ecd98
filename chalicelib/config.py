"""Settings, read from the environment lazily (never at import time).

Chalice imports ``app.py`` for ``package``/``deploy``/``local``; reading required
settings at import would break those commands and slow every cold start, so all
access goes through :func:`get_settings`, which reads once and caches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Settings:
    stage: str
    table_name: str
    region: str
    #: Base URL of the public API (used to build invite links such as ``{base}/r/{code}``).
    public_base_url: str
    #: SHA-256 hex digests of accepted operator keys (comma-separated in the env).
    operator_key_hashes: tuple[str, ...]
    #: Master secret from which webhook signing secrets are derived (never stored in the table).
    secret_key: str | None
    #: Id (name or ARN) of the Secrets Manager secret holding the master secret (deployed stages).
    secret_key_secret_id: str | None
    ses_sender: str
    #: How long an old webhook secret keeps verifying after a rotation.
    secret_rotation_overlap_hours: int
    #: In-process cache lifetime of program/partner/key records (revocation delay).
    config_cache_seconds: int
    #: SNS platform applications for push (``fcm`` / ``apns``); empty = push not configured.
    sns_platform_app_fcm: str | None = None
    sns_platform_app_apns: str | None = None
    #: How long a notification may stay "sending" before another consumer takes it over.
    notify_lease_seconds: int = 60
    #: KMS key (id, ARN or alias) that wraps the data keys of platform-issued secrets (envelope encryption).
    kms_key_id: str | None = None
    #: SQS queue URL of the asynchronous CRM fetch (HubSpot, Bitrix24, amoCRM send only ids).
    crm_fetch_queue_url: str | None = None
    #: Outgoing partner webhooks may target any URL (http, loopback, private addresses): the local run and
    #: the tests only (``SARAFAN_WEBHOOK_ALLOW_ANY_TARGET=1`` is ignored in any other stage).
    webhook_allow_any_target: bool = False


#: Stages that never run in AWS (the local run, the test suite).
LOCAL_STAGES = ("local", "test")


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    stage = os.environ.get("SARAFAN_STAGE", "dev")
    hashes = tuple(h.strip().lower() for h in os.environ.get("SARAFAN_OPERATOR_KEY_SHA256", "").split(",") if h.strip())
    return Settings(
        stage=stage,
        table_name=os.environ.get("SARAFAN_TABLE", f"sarafan-{stage}"),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-central-1",
        public_base_url=os.environ.get("SARAFAN_PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
        operator_key_hashes=hashes,
        secret_key=os.environ.get("SARAFAN_SECRET_KEY") or None,
        secret_key_secret_id=os.environ.get("SARAFAN_SECRET_KEY_SECRET_ID") or None,
        ses_sender=os.environ.get("SARAFAN_SES_SENDER", "no-reply@sarafan.local"),
        secret_rotation_overlap_hours=_int_env("SARAFAN_SECRET_OVERLAP_HOURS", 24),
        config_cache_seconds=_int_env("SARAFAN_CONFIG_CACHE_SECONDS", 30),
        sns_platform_app_fcm=os.environ.get("SARAFAN_SNS_PLATFORM_APP_FCM") or None,
        sns_platform_app_apns=os.environ.get("SARAFAN_SNS_PLATFORM_APP_APNS") or None,
        notify_lease_seconds=_int_env("SARAFAN_NOTIFY_LEASE_SECONDS", 60),
        kms_key_id=os.environ.get("SARAFAN_KMS_KEY_ID") or None,
        crm_fetch_queue_url=os.environ.get("SARAFAN_CRM_FETCH_QUEUE_URL") or None,
        webhook_allow_any_target=stage in LOCAL_STAGES
        and os.environ.get("SARAFAN_WEBHOOK_ALLOW_ANY_TARGET", "").lower() in ("1", "true", "yes"),
    )


def reset_settings() -> None:
    """Forget cached settings (tests and the local runner change the env)."""
    get_settings.cache_clear()

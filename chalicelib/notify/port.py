"""The notifier port: what delivery needs from SES and SNS, an AWS adapter and an in-memory fake.

Errors are classified once, here: :class:`TransientSendError` (throttling, 5xx, timeouts:
retry with backoff, the message stays pending) and :class:`PermanentSendError`
(``MessageRejected``, an invalid or disabled endpoint, an invalid number: the message is
marked ``failed`` and never retried). SES has no idempotency token, so a send that
succeeded but whose reply was lost cannot be told apart from one that failed; see
``docs/notifications.md`` (the at-least-once window).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

#: SES/SNS error codes that mean "try again later".
TRANSIENT_CODES = {
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalError", "InternalErrorException",
    "KMSThrottlingException", "KMSThrottling",
}
#: Codes whose meaning is about the push endpoint itself (drop or re-enable it).
ENDPOINT_GONE_CODES = {"EndpointDisabled", "EndpointDisabledException", "InvalidEndpoint"}


class SendError(Exception):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class TransientSendError(SendError):
    """Retry later (throttled, provider down)."""


class PermanentSendError(SendError):
    """Never retry this message on this channel."""


@dataclass(frozen=True)
class Email:
    sender: str
    to: str
    subject: str
    text: str
    html: str
    sent_at: datetime  # the Date header: the service's clock when the message goes out
    headers: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: What the Message-ID is derived from (the outbox message: program and message id), so a retried send
    #: keeps its Message-ID; None: a fresh one.
    message_id: str | None = None


class Notifier(Protocol):
    def send_email(self, email: Email) -> str:
        """Send; return the provider's message id."""

    def send_sms(self, phone: str, text: str) -> str: ...

    def send_push(self, endpoint_arn: str, title: str, body: str) -> str: ...

    def register_device(self, platform: str, token: str, existing_arn: str | None) -> str:
        """Create (or refresh and re-enable) the push endpoint for ``token``; return its ARN."""

    def delete_device(self, endpoint_arn: str) -> None:
        """Delete the push endpoint (and with it the device token SNS holds); a missing one is not an error."""


def classify(exc: Exception) -> SendError:
    """A botocore ``ClientError`` (or a connection error) as a transient or permanent send error."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {}) or {}
        code = str(error.get("Code") or "Unknown")
        status = int((response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode") or 0)
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientSendError(code, str(error.get("Message") or ""))
        return PermanentSendError(code, str(error.get("Message") or ""))
    # botocore's EndpointConnectionError, ReadTimeoutError...: the provider did not answer.
    return TransientSendError(type(exc).__name__, str(exc)[:200])


def _mime(email: Email) -> bytes:
    from chalicelib.notify import mime

    return mime.message(email)


class AwsNotifier:
    """SES (``SendRawEmail``: custom List-Unsubscribe headers need raw MIME) and SNS."""

    def __init__(self, platform_applications: dict[str, str] | None = None) -> None:
        self.platform_applications = platform_applications or {}

    def send_email(self, email: Email) -> str:
        from chalicelib import aws

        ses = aws.client("ses")
        try:
            reply = ses.send_raw_email(
                Source=email.sender, Destinations=[email.to], RawMessage={"Data": _mime(email)},
                Tags=[{"Name": k, "Value": v} for k, v in email.tags.items()],
            )
        except Exception as exc:
            raise classify(exc) from exc
        return str(reply["MessageId"])

    def send_sms(self, phone: str, text: str) -> str:
        from chalicelib import aws

        sns = aws.client("sns")
        try:
            reply = sns.publish(PhoneNumber=phone, Message=text, MessageAttributes={
                "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}})
        except Exception as exc:
            raise classify(exc) from exc
        return str(reply["MessageId"])

    def send_push(self, endpoint_arn: str, title: str, body: str) -> str:
        import json

        from chalicelib import aws

        sns = aws.client("sns")
        payload = {
            "default": body,
            "GCM": json.dumps({"notification": {"title": title, "body": body}}, ensure_ascii=False),
            "APNS": json.dumps({"aps": {"alert": {"title": title, "body": body}}}, ensure_ascii=False),
        }
        try:
            reply = sns.publish(TargetArn=endpoint_arn, Message=json.dumps(payload, ensure_ascii=False),
                                MessageStructure="json")
        except Exception as exc:
            raise classify(exc) from exc
        return str(reply["MessageId"])

    def register_device(self, platform: str, token: str, existing_arn: str | None) -> str:
        from chalicelib import aws

        application = self.platform_applications.get(platform)
        if not application:
            raise PermanentSendError("PlatformNotConfigured", f"no SNS platform application for {platform}")
        sns = aws.client("sns")
        try:
            if existing_arn:
                # A new token for a known device, or a disabled endpoint: refresh and re-enable it.
                try:
                    sns.set_endpoint_attributes(EndpointArn=existing_arn,
                                                Attributes={"Token": token, "Enabled": "true"})
                    return existing_arn
                except Exception as exc:
                    if classify(exc).code not in {"NotFound", "NotFoundException", *ENDPOINT_GONE_CODES}:
                        raise
            try:
                arn = str(sns.create_platform_endpoint(PlatformApplicationArn=application, Token=token)["EndpointArn"])
            except Exception as exc:
                # SNS keeps the endpoint of a known token; when it differs (disabled after a permanent failure,
                # so dropped here) creating it again fails with InvalidParameter naming the existing ARN --
                # the case AWS's "create platform endpoint" guide handles by reusing that ARN.
                existing = _existing_endpoint(exc)
                if existing is None:
                    raise
                arn = existing
            # CreatePlatformEndpoint returns the existing endpoint for a known token, possibly disabled.
            sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Token": token, "Enabled": "true"})
            return arn
        except SendError:
            raise
        except Exception as exc:
            raise classify(exc) from exc


    def delete_device(self, endpoint_arn: str) -> None:
        from chalicelib import aws

        sns = aws.client("sns")
        try:
            sns.delete_endpoint(EndpointArn=endpoint_arn)  # idempotent: a deleted endpoint answers success
        except Exception as exc:
            error = classify(exc)
            if error.code not in {"NotFound", "NotFoundException"}:
                raise error from exc


_EXISTING_ENDPOINT = re.compile(r"Endpoint (arn:[\w:/.-]+) already exists with the same [Tt]oken")


def _existing_endpoint(exc: Exception) -> str | None:
    """The ARN SNS names in ``InvalidParameter: … Endpoint <arn> already exists with the same Token …``."""
    response = getattr(exc, "response", None)
    error = (response.get("Error", {}) or {}) if isinstance(response, dict) else {}
    if str(error.get("Code")) != "InvalidParameter":
        return None
    found = _EXISTING_ENDPOINT.search(str(error.get("Message") or ""))
    return found.group(1) if found else None


@dataclass
class FakeNotifier:
    """In-memory notifier for service tests: records what was sent; ``fail_next`` queues errors.

    It keeps the promises ``tests/contract/test_notifier.py`` checks on SES/SNS too: distinct message ids, a
    known device refreshed under its endpoint, a deleted endpoint's push failing permanently, a platform
    without an application refused."""

    emails: list[Email] = field(default_factory=list)
    sms: list[tuple[str, str]] = field(default_factory=list)
    pushes: list[tuple[str, str, str]] = field(default_factory=list)
    fail_next: list[Exception] = field(default_factory=list)
    devices: dict[str, str] = field(default_factory=dict)
    platforms: set[str] = field(default_factory=lambda: {"fcm", "apns"})
    _endpoints_made: int = 0

    def _maybe_fail(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    def send_email(self, email: Email) -> str:
        self._maybe_fail()
        self.emails.append(email)
        return f"fake-email-{len(self.emails)}"

    def send_sms(self, phone: str, text: str) -> str:
        self._maybe_fail()
        self.sms.append((phone, text))
        return f"fake-sms-{len(self.sms)}"

    def send_push(self, endpoint_arn: str, title: str, body: str) -> str:
        self._maybe_fail()
        if endpoint_arn not in self.devices:
            raise PermanentSendError("NotFound", "Endpoint does not exist")
        self.pushes.append((endpoint_arn, title, body))
        return f"fake-push-{len(self.pushes)}"

    def register_device(self, platform: str, token: str, existing_arn: str | None) -> str:
        self._maybe_fail()
        if platform not in self.platforms:
            raise PermanentSendError("PlatformNotConfigured", f"no SNS platform application for {platform}")
        if existing_arn in self.devices:
            self.devices[existing_arn] = token
            return existing_arn
        known = next((arn for arn, held in self.devices.items() if held == token), None)
        if known is not None:
            return known
        self._endpoints_made += 1
        arn = f"arn:aws:sns:eu-central-1:000000000000:endpoint/{platform}/fake/{self._endpoints_made}"
        self.devices[arn] = token
        return arn

    def delete_device(self, endpoint_arn: str) -> None:
        self._maybe_fail()
        self.devices.pop(endpoint_arn, None)


def default_notifier() -> Notifier:
    from chalicelib.config import get_settings

    settings = get_settings()
    return AwsNotifier(settings_platform_apps(settings))


def settings_platform_apps(settings: Any) -> dict[str, str]:
    apps = {}
    for platform in ("fcm", "apns"):
        arn = getattr(settings, f"sns_platform_app_{platform}", None)
        if arn:
            apps[platform] = arn
    return apps

"""The notifier port's contract, run against :class:`FakeNotifier` and :class:`AwsNotifier` on moto's SES/SNS.

A service or delivery test on the fake means the same as one on SES and SNS only if both keep these
promises: what a send returns, what reaches the recipient, how devices register, refresh and go away,
and which failures are permanent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from chalicelib.notify.port import AwsNotifier, Email, FakeNotifier, Notifier, PermanentSendError
from tests import notify_support

#: The service's clock when the message goes out (its Date header).
SENT_AT = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SENDER = "no-reply@sarafan.test"  # verified for moto's SES by the suite's provisioning
LETTER = Email(sender=SENDER, to="vera@example.com", subject="+400 баллов: добро пожаловать",
               text="Здравствуйте, Вера!\n\nВам начислено 400 баллов.", html="<p>Здравствуйте, Вера!</p>",
               headers={"List-Unsubscribe": "<https://srf.test/u/tok>",
                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
               tags={"kind": "friend_welcome"}, sent_at=SENT_AT)


def _lines(wire: str) -> str:
    """A MIME part's text as its reader sees it: RFC 5322 lines end in CRLF on the wire, and the part ends
    with a line break."""
    return wire.replace("\r\n", "\n").removesuffix("\n")


@dataclass
class Impl:
    kind: str
    notifier: Notifier

    def emails(self) -> list[tuple[str, str, str, str, dict[str, str]]]:
        """(to, subject, text, html, the extra headers) of every e-mail the recipient got."""
        if isinstance(self.notifier, FakeNotifier):
            return [(m.to, m.subject, m.text, m.html, dict(m.headers)) for m in self.notifier.emails]
        return [(sent.to[0], sent.subject, _lines(sent.text), _lines(sent.html),
                 {name: str(sent.headers[name]) for name in LETTER.headers if sent.headers[name] is not None})
                for sent in notify_support.ses_sent()]

    def sms(self) -> list[tuple[str, str]]:
        if isinstance(self.notifier, FakeNotifier):
            return list(self.notifier.sms)
        return notify_support.sms_sent()


@pytest.fixture(params=["fake", "aws"])
def impl(request: pytest.FixtureRequest) -> Iterator[Impl]:
    if request.param == "fake":
        yield Impl("fake", FakeNotifier(platforms={"fcm"}))
        return
    request.getfixturevalue("aws")
    from chalicelib import aws

    arn = aws.client("sns").create_platform_application(
        Name="sarafan-fcm", Platform="GCM", Attributes={"PlatformCredential": "fcm-server-key"},
    )["PlatformApplicationArn"]
    yield Impl("aws", AwsNotifier({"fcm": arn}))


def test_an_email_reaches_its_recipient_with_both_parts_and_the_headers(impl: Impl) -> None:
    first = impl.notifier.send_email(LETTER)
    second = impl.notifier.send_email(LETTER)
    assert first and second and first != second
    assert impl.emails() == [("vera@example.com", LETTER.subject, LETTER.text, LETTER.html, LETTER.headers)] * 2


def test_an_sms_reaches_its_phone(impl: Impl) -> None:
    message_id = impl.notifier.send_sms("+79161234567", "+400 баллов в «Кофейне»")
    assert message_id
    assert impl.sms() == [("+79161234567", "+400 баллов в «Кофейне»")]


def test_a_device_registers_once_and_a_new_token_refreshes_the_same_endpoint(impl: Impl) -> None:
    arn = impl.notifier.register_device("fcm", "token-1", None)
    assert arn.startswith("arn:aws:sns:")
    assert impl.notifier.register_device("fcm", "token-2", arn) == arn
    other = impl.notifier.register_device("fcm", "token-3", None)
    assert other != arn
    assert impl.notifier.send_push(arn, "+400", "Добро пожаловать")


def test_a_push_to_a_deleted_device_fails_permanently_and_deleting_twice_is_fine(impl: Impl) -> None:
    arn = impl.notifier.register_device("fcm", "token-1", None)
    impl.notifier.delete_device(arn)
    impl.notifier.delete_device(arn)
    with pytest.raises(PermanentSendError):
        impl.notifier.send_push(arn, "+400", "Добро пожаловать")


def test_a_deleted_device_registers_again_under_a_new_endpoint(impl: Impl) -> None:
    arn = impl.notifier.register_device("fcm", "token-1", None)
    impl.notifier.delete_device(arn)
    again = impl.notifier.register_device("fcm", "token-1", arn)
    assert again != arn
    assert impl.notifier.send_push(again, "+400", "Добро пожаловать")


def test_a_platform_without_an_application_is_refused_permanently(impl: Impl) -> None:
    with pytest.raises(PermanentSendError) as refused:
        impl.notifier.register_device("apns", "token-1", None)
    assert refused.value.code == "PlatformNotConfigured"

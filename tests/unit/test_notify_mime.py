"""The lean MIME writer (chalicelib/notify/mime.py): its bytes parse back, with Python's e-mail parser, to the
same headers and parts as the standard library's builder gives, in Russian and English, and stay within the
RFCs' line limits."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.utils import formataddr

import pytest

from chalicelib.notify import mime
from chalicelib.notify.port import Email
from chalicelib.notify.render import KINDS, LOCALES, render

#: The service's clock when the message goes out (its Date header).
SENT_AT = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
UNSUBSCRIBE = "<https://srf.test/u/" + "t0K3n-" * 30 + ">"
HEADERS = {"List-Unsubscribe": UNSUBSCRIBE, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
VALUES = {"program": "Кофейня «Зёрна»", "points_unit": "баллы", "points": 1490, "balance": 2500, "level": 2,
          "available_at": "2026-01-22T10:00:00.000000Z", "name": "Ольга"}


def _email(subject: str, text: str, html: str, name: str = "Кофейня «Зёрна»", to: str = "olga@example.com") -> Email:
    return Email(sender=formataddr((name, "noreply@srf.test")), to=to, subject=subject, text=text, html=html,
                 headers=dict(HEADERS), tags={"kind": "points_available"}, sent_at=SENT_AT)


def _parts(raw: bytes, policy: email.policy.Policy) -> dict[str, object]:
    parsed = email.message_from_bytes(raw, policy=policy)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [p for p in parsed.walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    texts = []
    for part in parts:
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        texts.append(payload.decode(part.get_content_charset() or "ascii"))
    return {"from": str(make_header(decode_header(parsed["From"]))), "to": str(parsed["To"]),
            "subject": str(make_header(decode_header(parsed["Subject"]))),
            "unsubscribe": str(parsed["List-Unsubscribe"]), "post": str(parsed["List-Unsubscribe-Post"]),
            "mime": str(parsed["MIME-Version"]), "has_date": parsed["Date"] is not None,
            "message_id": str(parsed["Message-ID"]), "text": texts[0], "html": texts[1],
            "defects": [d for p in parsed.walk() for d in p.defects]}


def _check_lines(raw: bytes) -> None:
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only
    head, _, body = raw.partition(b"\r\n\r\n")
    # (List-Unsubscribe is one long URL, as before)
    assert all(len(line) <= 78 for line in head.split(b"\r\n") if not line.startswith(b"List-Unsubscribe:"))
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))  # quoted-printable and base64 alike
    assert raw.isascii()


def _rendered(kind: str, locale: str) -> tuple[str, str, str]:
    out = render(kind, locale, VALUES, link="https://srf.test/r/ABC", unsubscribe_url=UNSUBSCRIBE[1:-1],
                 offer="Пригласите друга: 500 баллов")
    return out.subject, out.text, out.html


CASES = [pytest.param(*_rendered(kind, locale), id=f"{kind}-{locale}") for kind in KINDS for locale in LOCALES] + [
    pytest.param("+120 баллов уже на счёте: спасибо за покупку в «Зёрна», ждём вас снова! " * 3,
                 "Строка с пробелом в конце \nи табуляцией\t\n" + "длинная строка " * 40, "<p>" + "Ё" * 500 + "</p>",
                 id="long-ru"),
    pytest.param("Hello", "x" * 300 + "\nno newline at the end = " + "y" * 100, "<p>a=b</p>", id="long-en"),
    pytest.param("Emoji 🎉 and ё", "🎉" * 50, "🎉", id="four-byte"),
    pytest.param("", "", "", id="empty"),
    pytest.param("Line\r\nends\rmixed", "a\r\nb\rc\nd\n.\n", "<p>\r\n</p>", id="line-ends"),
]


@pytest.mark.parametrize(("subject", "text", "html"), CASES)
def test_the_lean_message_parses_like_the_standard_librarys(subject: str, text: str, html: str) -> None:
    if "\r" in subject or "\n" in subject:
        mail = _email(subject, text, html)
        assert mime.lean(mail) is None  # a header with a line break is refused, as email.message refuses it
        with pytest.raises(ValueError):
            mime.message(mail)
        return
    mail = _email(subject, text, html)
    lean = mime.lean(mail)
    assert lean is not None and mime.message(mail).startswith(b"From: ")
    _check_lines(lean)
    for policy in (email.policy.compat32, email.policy.default):
        ours, theirs = _parts(lean, policy), _parts(mime.stdlib(mail), policy)
        assert ours["defects"] == []
        assert ours["message_id"] != theirs["message_id"]  # a fresh id each
        ours.pop("message_id"), theirs.pop("message_id")
        assert ours == theirs
        assert ours["subject"] == subject
        plain = text.replace("\r\n", "\n").replace("\r", "\n")
        assert str(ours["text"]).replace("\r\n", "\n") == (plain if plain.endswith("\n") else plain + "\n")


def test_headers_are_written_as_rfc_5322_and_2047_say() -> None:
    mail = _email("+1 490 баллов", "Здравствуйте", "<p>Здравствуйте</p>", name="Coffee, Co.")
    raw = mime.lean(mail)
    assert raw is not None
    head = raw.partition(b"\r\n\r\n")[0].decode()
    assert 'From: "Coffee, Co." <noreply@srf.test>\r\n' in head
    assert "To: olga@example.com\r\n" in head
    assert "Subject: =?utf-8?b?" in head and all(len(w) <= 75 for w in head.split() if w.startswith("=?"))
    assert f"List-Unsubscribe: {UNSUBSCRIBE}\r\n" in head  # long ASCII: one readable line, not encoded
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in head
    assert "MIME-Version: 1.0\r\n" in head and "Content-Type: multipart/alternative; boundary=\"=_" in head
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Message-ID"].endswith("@srf.test>") and parsed["Date"].datetime.tzinfo is not None


def test_russian_bodies_go_as_base64_english_as_quoted_printable() -> None:
    assert mime.body("Здравствуйте, Ольга! " * 10)[0] == "base64"
    cte, data = mime.body("Hello Olga, your 120 points = 1.20 RUB\n")
    assert cte == "quoted-printable" and data == b"Hello Olga, your 120 points =3D 1.20 RUB\r\n"


def test_a_boundary_never_appears_in_a_part() -> None:
    mail = _email("x", "--=_" + "0" * 24 + "\n=_", "=_ --=_")
    raw = mime.lean(mail)
    assert raw is not None
    boundary = email.message_from_bytes(raw).get_boundary()
    assert boundary is not None and raw.count(f"--{boundary}".encode()) == 3


@pytest.mark.parametrize("mail", [
    Email(sender="noreply@srf.test", to="олег@example.com", subject="s", text="t", html="h", sent_at=SENT_AT),  # EAI address
    Email(sender="noreply@srf.test", to="a@example.com", subject="s", text="t", html="h", headers={"X-Long": "a" * 1000}, sent_at=SENT_AT),
    Email(sender="noreply@srf.test", to="a@example.com", subject="s", text="t", html="h", headers={"Bad Name": "v"}, sent_at=SENT_AT),
], ids=["non-ascii-address", "long-ascii-header", "odd-header-name"])
def test_what_the_lean_writer_does_not_take_goes_to_the_standard_library(mail: Email) -> None:
    assert mime.lean(mail) is None
    try:
        raw = mime.message(mail)
    except ValueError:
        return  # the standard library refuses it too
    assert raw.startswith(b"From: noreply@srf.test\r\n")


def test_a_long_russian_program_name_in_from_is_folded_encoded_words() -> None:
    name = "Программа лояльности «Фитнес-клуб Северное сияние»"
    raw = mime.lean(_email("Привет", "Текст", "<p>Текст</p>", name=name))
    assert raw is not None
    _check_lines(raw)
    head = raw.partition(b"\r\n\r\n")[0].decode()
    assert all(len(word) <= 75 for word in head.split() if word.startswith("=?"))
    # Decoded as RFC 2047 says (whitespace between adjacent encoded words is dropped). Python's own
    # policy.default address parser puts a space between them, for its own builder's output too.
    parsed = email.message_from_bytes(raw)
    assert str(make_header(decode_header(parsed["From"]))) == f"{name} <noreply@srf.test>"


def test_a_retried_send_keeps_its_message_id_in_both_builders() -> None:
    def mail(message_id: str | None) -> Email:
        return Email(sender=formataddr(("Зёрна", "noreply@srf.test")), to="olga@example.com", subject="s",
                     text="t", html="h", sent_at=SENT_AT, message_id=message_id)

    first, retry = mime.lean(mail("prg_1/m_1")), mime.lean(mail("prg_1/m_1"))
    assert first is not None and retry is not None
    ids = {email.message_from_bytes(raw)["Message-ID"] for raw in (first, retry, mime.stdlib(mail("prg_1/m_1")))}
    assert len(ids) == 1 and ids.pop().endswith("@srf.test>")
    other = mime.lean(mail("prg_1/m_2"))
    assert other is not None and email.message_from_bytes(other)["Message-ID"] != email.message_from_bytes(first)["Message-ID"]

"""The raw MIME of a notification e-mail, written directly (``SendRawEmail``'s ``RawMessage.Data``).

Every e-mail is the same shape: ``From``/``To``/``Subject``/``Date``/``Message-ID``, the ``List-Unsubscribe``
headers, and a ``multipart/alternative`` of a UTF-8 text part and an HTML part. The standard library's
``email.message.EmailMessage`` builds it through its header registry and generator (each header parsed into a
token tree and folded back, each part's parameters parsed again): half of a delivery's CPU in the local run.
:func:`message` writes the same message as bytes:

* headers per RFC 5322, CRLF line ends; ASCII values as they are; a value with non-ASCII characters as RFC 2047
  encoded words (``=?utf-8?b?…?=``, UTF-8 characters never split, each word at most 75 characters, folded one
  word per line so no line passes 78);
* each body part in quoted-printable (lines of at most 76 characters, soft breaks) or base64, whichever is
  shorter: English stays readable, Russian is a third the size of its quoted-printable (the fallback below
  always writes quoted-printable);
* a non-ASCII display name in ``From`` (``formataddr`` writes it as one encoded word, however long) as
  folded encoded words of at most 75 characters, then the address;
* the ``Message-ID`` derived from the outbox message, so a retried send keeps it;
* a boundary starting with ``=_``, which neither encoding can produce; the CRLF before a boundary line belongs
  to the boundary (RFC 2046), so each part's own last line end is kept.

Anything outside that shape (a non-ASCII address, an ASCII header too long for one line, an unusual header
name) is left to ``email.message`` as before. ``tests/unit/test_notify_mime.py`` parses both builders' output
back with ``email.parser`` and compares them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from datetime import UTC
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chalicelib.notify.port import Email

CRLF = "\r\n"
#: UTF-8 bytes per encoded word: 42 bytes are 56 base64 characters, 68 with ``=?utf-8?b?`` and ``?=``, so
#: ``Subject: `` and a word stay within 78 characters.
WORD_BYTES = 42
#: RFC 5322's hard limit of a line, CRLF excluded.
MAX_LINE = 998
_PRINTABLE = re.compile(r"[\x20-\x7e]*\Z")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")


def _encoded_words(value: str) -> list[str]:
    data = value.encode("utf-8")
    words, start = [], 0
    while start < len(data):
        end = min(start + WORD_BYTES, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # never split a character
            end -= 1
        words.append("=?utf-8?b?" + base64.b64encode(data[start:end]).decode("ascii") + "?=")
        start = end
    return words or ['=?utf-8?b??=']


def header(name: str, value: str) -> str | None:
    """``Name: value`` with its CRLF; ``None`` when the lean writer does not take it (the caller falls back)."""
    if not _FIELD_NAME.match(name) or "\r" in value or "\n" in value:
        return None
    if _PRINTABLE.match(value):  # as it is (an address header's name comes RFC 2047-encoded by formataddr)
        line = f"{name}: {value}"
        return line + CRLF if len(line) <= MAX_LINE else None
    return f"{name}: " + (CRLF + " ").join(_encoded_words(value)) + CRLF


def _lines(text: str) -> bytes:
    """UTF-8 with CRLF line ends, ending in one (as ``email.contentmanager`` writes a text part)."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", CRLF).encode("utf-8")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def body(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, encoded body ending in CRLF) of one text part."""
    data = _lines(text)
    qp = binascii.b2a_qp(data, istext=True)
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    if len(qp) <= len(b64):
        return "quoted-printable", qp
    return "base64", b64


def _part(subtype: str, text: str, boundary: str) -> bytes:
    cte, data = body(text)
    return (f"--{boundary}{CRLF}Content-Type: text/{subtype}; charset=\"utf-8\"{CRLF}"
            f"Content-Transfer-Encoding: {cte}{CRLF}{CRLF}").encode("ascii") + data + b"\r\n"


def message_id(email: Email) -> str:
    """The ``Message-ID``: derived from the outbox message (``email.message_id``) when there is one, so a send
    retried after a timeout carries the same id and the receiving side can drop the duplicate; else a fresh one."""
    domain = email.sender.rpartition("@")[2].rstrip(">") or "sarafan.invalid"
    if email.message_id:
        return f"<{hashlib.sha256(email.message_id.encode()).hexdigest()[:32]}@{domain}>"
    return make_msgid(domain=domain)


def address_header(name: str, value: str) -> str | None:
    """An address header: a display name that is (or was encoded by ``formataddr`` as) non-ASCII goes as
    encoded words of at most 75 characters, folded, then the address; an ASCII one as it is."""
    from email.header import decode_header, make_header
    from email.utils import parseaddr

    display, address = parseaddr(value)
    if "=?" not in value or not display or not address.isascii():
        return header(name, value)
    decoded = str(make_header(decode_header(display)))
    if decoded.isascii():
        return header(name, value)
    return f"{name}: " + (CRLF + " ").join(_encoded_words(decoded)) + f"{CRLF} <{address}>{CRLF}"


def lean(email: Email) -> bytes | None:
    """The message as bytes, or ``None`` if it needs the standard library's builder."""
    if not (email.sender.isascii() and email.to.isascii()):
        return None
    lines = [
        address_header("From", email.sender), header("To", email.to), header("Subject", email.subject),
        header("Date", format_datetime(email.sent_at.astimezone(UTC))),
        header("Message-ID", message_id(email)),
        *(header(name, value) for name, value in email.headers.items()),
    ]
    if any(line is None for line in lines):
        return None
    boundary = "=_" + secrets.token_hex(12)
    head = "".join(line for line in lines if line is not None)
    head += f"MIME-Version: 1.0{CRLF}Content-Type: multipart/alternative; boundary=\"{boundary}\"{CRLF}{CRLF}"
    return b"".join((head.encode("ascii"), _part("plain", email.text, boundary), _part("html", email.html, boundary),
                     f"--{boundary}--{CRLF}".encode("ascii")))


def stdlib(email: Email) -> bytes:
    """The same message built by ``email.message`` (what :func:`message` falls back to)."""
    from email.message import EmailMessage
    from email.policy import SMTP
    from email.utils import formatdate

    # Long ASCII headers (List-Unsubscribe) stay readable instead of RFC 2047-encoded.
    built = EmailMessage(policy=SMTP.clone(max_line_length=998))
    built["From"] = email.sender
    built["To"] = email.to
    built["Subject"] = email.subject
    built["Date"] = formatdate(email.sent_at.timestamp(), usegmt=True)
    built["Message-ID"] = message_id(email)
    for name, value in email.headers.items():
        built[name] = value
    built.set_content(email.text, cte="quoted-printable")
    built.add_alternative(email.html, subtype="html", cte="quoted-printable")
    return bytes(built)


def message(email: Email) -> bytes:
    """The raw MIME of ``email`` (lean, or the standard library's for what the lean writer does not take)."""
    return lean(email) or stdlib(email)

"""Building and serialising the messages we send.

Headers take addresses in their ASCII form (IDN domains punycoded) and display names as
typed (the SMTP policy RFC 2047-encodes them). Serialisation uses ``email.policy.SMTP`` so
line endings are CRLF, which smtplib does not fix for bytes.
"""

from __future__ import annotations

import email.policy
import email.utils
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage

from .validation import SenderSettings, ascii_address


def address_header(name: str, address: str) -> Address:
    return Address(display_name=name, addr_spec=ascii_address(address))


def apply_sender_headers(message: EmailMessage, settings: SenderSettings) -> None:
    """From, Reply-To (only when set), Date and Message-ID, unless the message has them."""
    if "From" not in message:
        message["From"] = address_header(settings.from_name, settings.from_address)
    if "Reply-To" not in message and settings.reply_to_address:
        message["Reply-To"] = address_header(settings.reply_to_name,
                                             settings.reply_to_address)
    if "Date" not in message:
        message["Date"] = email.utils.format_datetime(datetime.now(timezone.utc))
    if "Message-ID" not in message:
        domain = ascii_address(settings.from_address).rpartition("@")[2]
        message["Message-ID"] = email.utils.make_msgid(domain=domain)


def build_test_message(settings: SenderSettings, recipient: str, subject: str,
                       body: str) -> EmailMessage:
    """The fixed test message: our subject and body, one recipient."""
    message = EmailMessage()
    message["Subject"] = subject
    message["To"] = ascii_address(recipient)
    apply_sender_headers(message, settings)
    message.set_content(body)
    return message


def serialise(message: EmailMessage) -> bytes:
    """CRLF bytes, identical to ``as_bytes(policy=SMTP)`` (fastmail proves it)."""
    from .fastmail import serialise as fast

    return fast(message)

"""Building and serialising the messages we send.

Headers take addresses in their ASCII form (IDN domains punycoded) and display names as
typed (the SMTP policy RFC 2047-encodes them). Serialisation is fastmail's (CRLF line
endings, byte-identical to ``email.policy.SMTP``).
"""

from __future__ import annotations

import email.policy
import email.utils
import time
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage

from .validation import SenderSettings, ascii_address


def address_header(name: str, address: str) -> Address:
    return Address(display_name=name, addr_spec=ascii_address(address))


class SenderHeaders:
    """The headers a sender adds, built once per sender version: parsing addresses and
    dates costs far more than sending on a reused connection. Header objects made by the
    policy's factory are stored by ``message[name] = ...`` without being parsed again."""

    def __init__(self, settings: SenderSettings) -> None:
        factory = email.policy.default.header_factory
        self._factory = factory
        self.from_ = factory("From", address_header(settings.from_name,
                                                    settings.from_address))
        self.reply_to = (factory("Reply-To", address_header(settings.reply_to_name,
                                                            settings.reply_to_address))
                         if settings.reply_to_address else None)
        self.envelope_from = ascii_address(settings.from_address)
        self.domain = self.envelope_from.rpartition("@")[2]
        self._date: tuple[int, object] = (-1, None)

    def _date_header(self) -> object:
        second = int(time.time())
        if self._date[0] != second:  # one Date header a second is plenty
            value = email.utils.format_datetime(datetime.fromtimestamp(second, timezone.utc))
            self._date = (second, self._factory("Date", value))
        return self._date[1]

    def apply(self, message: EmailMessage) -> None:
        """From, Reply-To (only when set), Date and Message-ID, unless the message has
        them."""
        if "From" not in message:
            message["From"] = self.from_
        if "Reply-To" not in message and self.reply_to is not None:
            message["Reply-To"] = self.reply_to
        if "Date" not in message:
            message["Date"] = self._date_header()
        if "Message-ID" not in message:
            message["Message-ID"] = email.utils.make_msgid(domain=self.domain)


def build_test_message(settings: SenderSettings, recipient: str, subject: str,
                       body: str) -> EmailMessage:
    """The fixed test message: our subject and body, one recipient."""
    message = EmailMessage()
    message["Subject"] = subject
    message["To"] = ascii_address(recipient)
    SenderHeaders(settings).apply(message)
    message.set_content(body)
    return message


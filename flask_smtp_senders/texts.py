"""The sentences users read: every ``SMTP_SENDERS_MSG_*`` (pages, API, CLI, the test
email) default, and with :mod:`flask_smtp_senders.advice_texts` every
``SMTP_SENDERS_ADVICE_*`` (the suggested fix of a failed test).

The contract's exact texts (the vendor guide) are the defaults of the ``MSG_`` keys; a host
may translate or reword any of them in its config. ``docs/configuration.md`` documents
each key (a test checks). Kept apart from the behaviour settings in
:mod:`flask_smtp_senders.settings`, which merges both into one ``DEFAULTS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .advice_texts import ADVICE_TEXTS

MESSAGES: dict[str, str] = {
    #: Shown while the saved settings are not the last ones that passed a test email
    #: (never tested, or changed since: the contract's warning).
    "SMTP_SENDERS_MSG_SAVE_WARNING": (
        "Saving SMTP settings without validating credentials using the test email button "
        "can cause problems sending emails. You can also send a test email later."
    ),
    #: Shown after a sender was saved or deleted.
    "SMTP_SENDERS_MSG_SAVED": "The sender was saved.",
    "SMTP_SENDERS_MSG_DELETED": "The sender was deleted.",
    #: Shown after another sender was made the default.
    "SMTP_SENDERS_MSG_DEFAULT_CHANGED": "The default sender was changed.",
    #: Shown when someone else saved or deleted the sender meanwhile.
    "SMTP_SENDERS_MSG_CONFLICT": (
        "Someone else changed this sender while you were editing it. Your changes are "
        "still in the form: check them against the saved values and save again."
    ),
    #: Shown when a save failed for a reason of ours (database, audit); nothing was saved.
    "SMTP_SENDERS_MSG_SAVE_FAILED": (
        "The sender could not be saved. Nothing was changed; try again."
    ),
    #: Shown when the Server Name leads to an address senders may not use.
    "SMTP_SENDERS_MSG_DESTINATION_REFUSED": (
        "This Server Name leads to an address that senders are not allowed to use."
    ),
    #: Shown (with HTTP 429) when Send Test Email is used too often.
    "SMTP_SENDERS_MSG_RATE_LIMITED": (
        "Too many test emails. Try again in {retry_after} seconds."
    ),
    #: Shown (with HTTP 503) when the rate-limit storage (Redis) cannot be reached.
    "SMTP_SENDERS_MSG_RATE_LIMIT_UNAVAILABLE": (
        "Test emails cannot be sent right now because their rate limit cannot be checked. "
        "Nothing was sent; try again in a few minutes."
    ),
    #: Shown (with HTTP 429) when one administrator saves changes too often.
    "SMTP_SENDERS_MSG_WRITES_RATE_LIMITED": (
        "Too many changes. Nothing was saved; try again in {retry_after} seconds."
    ),
    #: Shown (with HTTP 503) when the rate-limit storage cannot be reached on a change.
    "SMTP_SENDERS_MSG_RATE_LIMIT_UNAVAILABLE_WRITES": (
        "Changes cannot be saved right now because their rate limit cannot be checked. "
        "Nothing was saved; try again in a few minutes."
    ),
    #: Shown (with HTTP 503) when the sender database cannot be reached.
    "SMTP_SENDERS_MSG_STORAGE_UNAVAILABLE": (
        "The sender settings cannot be reached right now. Nothing was changed; try again."
    ),
    #: Shown (pages and API with HTTP 503, the CLI, the error ``send`` raises) when the
    #: sender table does not exist yet: start-up creates it only with
    #: SMTP_SENDERS_CREATE_TABLES on.
    "SMTP_SENDERS_MSG_TABLE_MISSING": (
        "The smtp_senders table does not exist yet: run `flask smtp-senders upgrade` "
        "(or set SMTP_SENDERS_CREATE_TABLES = True)."
    ),
    #: Subject and body of the fixed test message (never user-controlled).
    "SMTP_SENDERS_MSG_TEST_SUBJECT": "Test message from your SMTP sender",
    "SMTP_SENDERS_MSG_TEST_BODY": (
        "This is a test message sent to check your custom SMTP server settings.\n"
        "If you can read it, your Senders configuration works.\n"
    ),
    #: Shown when the test email was accepted by the server.
    "SMTP_SENDERS_MSG_TEST_SUCCESS": "A test message was successfully sent to {recipient}.",
    #: Shown when the connection check (the dry run: everything up to RCPT TO, then RSET
    #: and QUIT) passed; a failed check shows the failure message of its stage.
    "SMTP_SENDERS_MSG_CHECK_SUCCESS": (
        "The connection check passed: your server accepted the sender and the recipient. "
        "Nothing was sent."
    ),
    #: Shown when the server refused the credentials.
    "SMTP_SENDERS_MSG_AUTH_FAILED": (
        "Using the credentials you provided, we couldn't authenticate with your email server."
    ),
    #: Shown when an OAuth2 sender (Microsoft 365, Google Workspace, Custom Server with
    #: OAuth2) got no access token from its provider; nothing was sent.
    "SMTP_SENDERS_MSG_TOKEN_FAILED": (
        "We couldn't get an access token from your sign-in provider, so nothing was sent. "
        "Check the sign-in settings."
    ),
    #: Shown when the Server Name could not be resolved.
    "SMTP_SENDERS_MSG_RESOLVE_FAILED": (
        "We couldn't find your email server. Check the Server Name."
    ),
    #: Shown when no TCP connection could be made.
    "SMTP_SENDERS_MSG_CONNECT_FAILED": (
        "We couldn't connect to your email server. Check the Server Name and Port."
    ),
    #: Shown when TLS could not be set up or the certificate was not trusted.
    "SMTP_SENDERS_MSG_TLS_FAILED": (
        "We couldn't set up a secure connection with your email server. Check the Port and "
        "the server's certificate."
    ),
    #: Shown when the server refused the From Address at MAIL FROM.
    "SMTP_SENDERS_MSG_SENDER_REFUSED": "Your email server refused the From Address.",
    #: Shown when the server refused the recipient at RCPT TO.
    "SMTP_SENDERS_MSG_RECIPIENT_REFUSED": "Your email server refused the recipient address.",
    #: Shown when the server refused the message content.
    "SMTP_SENDERS_MSG_DATA_FAILED": "Your email server did not accept the message.",
    #: Shown when the server did not answer in time.
    "SMTP_SENDERS_MSG_TIMEOUT": "Your email server did not answer in time.",
    #: Shown when a message needs SMTPUTF8 (a non-ASCII address, RFC 6531) and the server
    #: does not offer it; nothing was sent.
    "SMTP_SENDERS_MSG_SMTPUTF8_UNSUPPORTED": (
        "Your email server does not accept internationalized email addresses (SMTPUTF8), "
        "so this message could not be sent."
    ),
    #: Shown when a message has 8-bit headers and the server offers no 8BITMIME (a body
    #: is re-encoded to 7-bit instead; headers cannot be); nothing was sent.
    "SMTP_SENDERS_MSG_EIGHT_BIT_UNSUPPORTED": (
        "Your email server accepts only 7-bit messages and this message cannot be written "
        "in 7 bits, so it was not sent."
    ),
    #: From-domain advice (shown on save and with the test diagnostics, never as errors).
    "SMTP_SENDERS_MSG_ADVICE_SPF_PUBLISHED": (
        "{domain} publishes an SPF record: make sure it lists this mail server."
    ),
    "SMTP_SENDERS_MSG_ADVICE_SPF_MISSING": (
        "{domain} publishes no SPF record: receiving servers cannot tell that this mail "
        "server may send for it. Publishing one helps your messages arrive."
    ),
    "SMTP_SENDERS_MSG_ADVICE_DMARC_POLICY": (
        "{domain} has a DMARC policy (p={policy}). It applies to every message sent with "
        "this From Address, so this mail server must be allowed to send for {domain}."
    ),
    "SMTP_SENDERS_MSG_ADVICE_DMARC_MISSING": (
        "{domain} publishes no DMARC policy: receiving servers decide alone what to do "
        "with messages that fail their checks."
    ),
    "SMTP_SENDERS_MSG_ADVICE_DNS_UNAVAILABLE": (
        "The DNS records of {domain} could not be checked just now."
    ),
    #: Shown when no configured key can decrypt the stored password.
    "SMTP_SENDERS_MSG_PASSWORD_REENTRY": (
        "The stored password can no longer be read. Edit the sender and re-enter the Password."
    ),
    #: Shown when the stored password is not bound to the sender's current Server Name,
    #: Port and Username (the row was changed outside the application): it is not used.
    "SMTP_SENDERS_MSG_PASSWORD_UNBOUND": (
        "The stored password belongs to other server settings. Edit the sender and "
        "re-enter the Password."
    ),
    #: The same two for an OAuth2 sender (Microsoft 365, Google Workspace, Custom Server
    #: with OAuth2), whose stored secret is a client secret or a service account key.
    "SMTP_SENDERS_MSG_SECRET_REENTRY": (
        "The stored client secret or key can no longer be read. Edit the sender and enter "
        "it again."
    ),
    "SMTP_SENDERS_MSG_SECRET_UNBOUND": (
        "The stored client secret or key belongs to other sign-in settings. Edit the "
        "sender and enter it again."
    ),
    #: On the edit page of a sender at smtp.office365.com (Microsoft 365), so after a save.
    "SMTP_SENDERS_MSG_OFFICE365_BASIC_AUTH_NOTICE": (
        "Microsoft 365 turns password sign-in (basic authentication) for SMTP off by default "
        "from the end of December 2026: add a Microsoft 365 sender (Provider Type Microsoft "
        "365, OAuth2 sign-in) in its place, or an administrator must turn password sign-in "
        "back on for the tenant."
    ),
}

#: Every text: the messages above and the advice of :mod:`.advice_texts`.
TEXTS: dict[str, str] = {**MESSAGES, **ADVICE_TEXTS}


def message(config: Mapping[str, Any], name: str, **values: str) -> str:
    """The user message ``SMTP_SENDERS_MSG_<NAME>``, formatted with ``values``."""
    return str(config[f"SMTP_SENDERS_MSG_{name.upper()}"]).format(**values)

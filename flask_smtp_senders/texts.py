"""The sentences users read: every ``SMTP_SENDERS_MSG_*`` (pages, API, CLI, the test
email) and ``SMTP_SENDERS_ADVICE_*`` (the suggested fix of a failed test) default.

The contract's exact texts (the vendor guide) are the defaults of the ``MSG_`` keys; a host
may translate or reword any of them in its config. ``docs/configuration.md`` documents
each key (a test checks). Kept apart from the behaviour settings in
:mod:`flask_smtp_senders.settings`, which merges both into one ``DEFAULTS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TEXTS: dict[str, str] = {
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
    #: On the edit page of a sender at smtp.office365.com (Microsoft 365), so after a save.
    "SMTP_SENDERS_MSG_OFFICE365_BASIC_AUTH_NOTICE": (
        "Microsoft 365 turns password sign-in (basic authentication) for SMTP off by default "
        "from the end of December 2026: this sender will then need OAuth2 sign-in, or an "
        "administrator must turn password sign-in back on for the tenant."
    ),
    # Diagnostics advice: one sentence with a failed test email or connection check,
    # picked by where and how it failed (flask_smtp_senders/smtp/diagnostics.py). The only
    # placeholders are {port}, {stage} (a stage label such as "RCPT TO") and {mechanisms}
    # (the AUTH mechanisms the server offered, filtered to plain names): never text the
    # server sent.
    #: The Server Name did not resolve.
    "SMTP_SENDERS_ADVICE_RESOLVE_FAILED": (
        "We could not find the address of this Server Name. Check the Server Name for "
        "typing mistakes."
    ),
    #: The Server Name resolves to an address the destination policy refuses.
    "SMTP_SENDERS_ADVICE_DESTINATION_REFUSED": (
        "This Server Name leads to an address that senders may not connect to. If the "
        "server is on your organisation's private network, the portal's operator can "
        "allow it with SMTP_SENDERS_ALLOW_PRIVATE, or change SMTP_SENDERS_DENIED_NETWORKS."
    ),
    #: Nothing listens on the port.
    "SMTP_SENDERS_ADVICE_CONNECTION_REFUSED": (
        "The server refused a connection on port {port}: nothing listens there. Check "
        "the Port."
    ),
    #: The TCP connection got no answer in time.
    "SMTP_SENDERS_ADVICE_CONNECT_TIMEOUT": (
        "The connection to port {port} got no answer. A firewall, on our side or the "
        "server's, may be blocking that port; check the Port too."
    ),
    #: The TCP connection failed otherwise (network unreachable, reset).
    "SMTP_SENDERS_ADVICE_CONNECT_FAILED": (
        "We could not open a connection to the server on port {port}. Check the Server "
        "Name and the Port."
    ),
    #: An SMTPS port whose server answered in plain SMTP.
    "SMTP_SENDERS_ADVICE_EXPECTS_STARTTLS": (
        "This server seems to expect STARTTLS on port {port}. Ports 25, 587 and 2525 use "
        "SMTP with STARTTLS; port 465 uses SMTPS (implicit TLS)."
    ),
    #: A STARTTLS port whose server sent no SMTP greeting (it waits for TLS at once).
    "SMTP_SENDERS_ADVICE_EXPECTS_TLS": (
        "The server did not greet us in plain SMTP on port {port}: it seems to expect "
        "TLS at once (SMTPS). If so, use port 465; ports 25, 587 and 2525 use SMTP with "
        "STARTTLS."
    ),
    #: A STARTTLS port whose server does not offer STARTTLS.
    "SMTP_SENDERS_ADVICE_STARTTLS_NOT_OFFERED": (
        "The server does not offer STARTTLS on port {port}, and we never send a password "
        "unencrypted. If the server uses implicit TLS (SMTPS), use port 465."
    ),
    #: STARTTLS offered, then refused.
    "SMTP_SENDERS_ADVICE_STARTTLS_REFUSED": (
        "The server offers STARTTLS on port {port} but refused it when asked. We never "
        "go on unencrypted: the server's administrator must fix its TLS setup."
    ),
    #: The certificate does not lead to a trusted authority.
    "SMTP_SENDERS_ADVICE_TLS_UNTRUSTED": (
        "The server's certificate is not signed by an authority we trust. If your server "
        "uses a private certificate authority, set SMTP_SENDERS_CA_FILE to its certificate."
    ),
    #: The certificate is for another name than the Server Name.
    "SMTP_SENDERS_ADVICE_TLS_WRONG_NAME": (
        "The server's certificate is for another name. Use the name on the certificate "
        "as Server Name (your provider's instructions give it)."
    ),
    #: The certificate has expired (or is not valid yet).
    "SMTP_SENDERS_ADVICE_TLS_EXPIRED": (
        "The server's certificate has expired or is not valid yet. The server's "
        "administrator must renew it."
    ),
    #: The TLS handshake failed for another reason.
    "SMTP_SENDERS_ADVICE_TLS_HANDSHAKE": (
        "A secure connection could not be set up on port {port}. The server may only "
        "offer TLS versions or ciphers we do not accept."
    ),
    #: The server offers no AUTH once the connection is encrypted.
    "SMTP_SENDERS_ADVICE_AUTH_NOT_OFFERED": (
        "The server does not offer AUTH, so it cannot check the Username and Password. "
        "Check that sign-in (SMTP AUTH) is enabled for this account and port."
    ),
    #: AUTH answered 535: wrong Username or Password.
    "SMTP_SENDERS_ADVICE_AUTH_REFUSED": (
        "The server refused the Username or Password. It offered these sign-in methods: "
        "{mechanisms}."
    ),
    #: AUTH refused with another code (the account may need an app password).
    "SMTP_SENDERS_ADVICE_AUTH_FAILED": (
        "The server did not accept the sign-in. It offered these sign-in methods: "
        "{mechanisms}. Some providers require an app password, or SMTP sign-in to be "
        "enabled for the account."
    ),
    #: The server offers only AUTH mechanisms we do not support.
    "SMTP_SENDERS_ADVICE_AUTH_NO_COMMON_METHOD": (
        "The server offers no sign-in method we support (PLAIN, LOGIN, CRAM-MD5). It "
        "offered: {mechanisms}."
    ),
    #: The credential is an OAuth2 access token; the server offers no mechanism for one.
    "SMTP_SENDERS_ADVICE_AUTH_NO_OAUTH": (
        "The server offers no OAuth2 sign-in method (XOAUTH2, OAUTHBEARER), so it cannot "
        "take an access token. It offered: {mechanisms}."
    ),
    #: AUTH answered 535 to an OAuth2 access token.
    "SMTP_SENDERS_ADVICE_AUTH_TOKEN_REFUSED": (
        "The server refused the access token: it may have expired or been revoked, lack "
        "the permission to send mail by SMTP, or belong to another account than the "
        "Username."
    ),
    #: AUTH refused with 5.7.139 or 5.7.30: Microsoft 365 refuses basic authentication.
    "SMTP_SENDERS_ADVICE_AUTH_BASIC_DISABLED": (
        "Microsoft 365 refused password sign-in (basic authentication) for SMTP, most likely "
        "off for this tenant (the default from the end of December 2026). The lasting fix is "
        "OAuth2 sign-in; until then, a "
        "Microsoft 365 administrator can turn SMTP AUTH basic authentication back on for the "
        "tenant. If it is on, check the Password and the tenant's sign-in policies."
    ),
    #: AUTH refused with 5.7.3: SMTP AUTH is off for the mailbox.
    "SMTP_SENDERS_ADVICE_AUTH_SMTP_DISABLED": (
        "The server refused the sign-in: SMTP AUTH may be off for this mailbox (in Microsoft "
        "365, an administrator turns on its \"Authenticated SMTP\" setting), or the Username "
        "or Password was refused."
    ),
    #: AUTH refused with 5.7.8 or 5.7.9 by Google's servers: no account password there.
    "SMTP_SENDERS_ADVICE_AUTH_APP_PASSWORD": (
        "Google does not accept the account's own password for SMTP. Use an app password "
        "(it needs 2-Step Verification on for the account) or OAuth2 sign-in."
    ),
    #: MAIL FROM refused (5xx).
    "SMTP_SENDERS_ADVICE_SENDER_REFUSED": (
        "The server refused the From Address. Many servers accept only the account's own "
        "address, or one of its aliases, as From Address."
    ),
    #: RCPT TO refused (5xx).
    "SMTP_SENDERS_ADVICE_RECIPIENT_REFUSED": (
        "The server refused the recipient. Check the address; some servers also refuse "
        "recipients in other domains unless the account may send there."
    ),
    #: The message itself refused after DATA (5xx).
    "SMTP_SENDERS_ADVICE_DATA_REFUSED": (
        "The server refused the message after accepting its sender and recipient. It may "
        "filter content or limit the size of messages."
    ),
    #: A temporary (4xx) refusal.
    "SMTP_SENDERS_ADVICE_TEMPORARY": (
        "The server refused for now at {stage} (a temporary refusal). Try again in a few "
        "minutes."
    ),
    #: The server closed the connection.
    "SMTP_SENDERS_ADVICE_DISCONNECTED": "The server closed the connection during {stage}.",
    #: The server stopped answering.
    "SMTP_SENDERS_ADVICE_TIMEOUT": "The server stopped answering during {stage}.",
}


def message(config: Mapping[str, Any], name: str, **values: str) -> str:
    """The user message ``SMTP_SENDERS_MSG_<NAME>``, formatted with ``values``."""
    return str(config[f"SMTP_SENDERS_MSG_{name.upper()}"]).format(**values)

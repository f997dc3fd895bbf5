"""The suggested fixes: every ``SMTP_SENDERS_ADVICE_*`` default, one sentence shown with a
failed test email or connection check (the SMTP exchange's, picked by
:mod:`flask_smtp_senders.smtp.advice`; the token request's, picked by
:mod:`flask_smtp_senders.oauth.advice`).

Why apart from the messages (:mod:`flask_smtp_senders.texts`): there are many, each tied to
one way of failing, and they are read and reworded with the code that picks them. A host
may translate or reword any of them in its config; ``docs/configuration.md`` documents
each key (a test checks).
"""

from __future__ import annotations

from .token_advice_texts import TOKEN_ADVICE

SMTP_ADVICE: dict[str, str] = {
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
        "a Microsoft 365 sender (Provider Type Microsoft 365, OAuth2 sign-in); until then, a "
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
        "(it needs 2-Step Verification on for the account) or a Google Workspace sender "
        "(Provider Type Google Workspace, OAuth2 sign-in)."
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

#: Every advice text: the SMTP exchange's above, the token request's beside them.
ADVICE_TEXTS: dict[str, str] = {**SMTP_ADVICE, **TOKEN_ADVICE}

"""The suggested fixes of a failed token request (OAuth2 senders), every
``SMTP_SENDERS_ADVICE_TOKEN_*`` default, picked by :mod:`flask_smtp_senders.oauth.advice`
from where the request failed and the provider's error code (Microsoft Entra's
``AADSTS`` codes, Google's errors, RFC 6749's). No placeholders: nothing the provider
wrote reaches a page.
"""

from __future__ import annotations

TOKEN_ADVICE: dict[str, str] = {
    #: The token URL is not an https:// URL we may use.
    "SMTP_SENDERS_ADVICE_TOKEN_BAD_URL": (
        "The Token URL is not a valid https:// address. Use the token endpoint URL your "
        "provider documents."
    ),
    #: The token endpoint's host name could not be resolved.
    "SMTP_SENDERS_ADVICE_TOKEN_RESOLVE_FAILED": (
        "We could not find the address of the token endpoint. Check the Token URL (or the "
        "Tenant ID) for typing mistakes."
    ),
    #: The token endpoint leads to an address senders may not connect to.
    "SMTP_SENDERS_ADVICE_TOKEN_DESTINATION_REFUSED": (
        "The token endpoint leads to an address that senders may not connect to. If it is "
        "on your organisation's private network, the portal's operator can allow it with "
        "SMTP_SENDERS_ALLOW_PRIVATE, or change SMTP_SENDERS_DENIED_NETWORKS."
    ),
    #: No connection to the token endpoint.
    "SMTP_SENDERS_ADVICE_TOKEN_UNREACHABLE": (
        "We could not connect to the token endpoint. It may be down, or a firewall may "
        "block the way to it. Check the Token URL, and try again later."
    ),
    #: The token endpoint did not answer within the deadline.
    "SMTP_SENDERS_ADVICE_TOKEN_TIMEOUT": (
        "The token endpoint did not answer in time. It may be overloaded, or a firewall "
        "may be in the way. Try again in a few minutes."
    ),
    #: The token endpoint's certificate is not from an authority we trust.
    "SMTP_SENDERS_ADVICE_TOKEN_TLS_UNTRUSTED": (
        "The token endpoint's certificate is not signed by an authority we trust. If it "
        "uses a private certificate authority, set SMTP_SENDERS_CA_FILE to its certificate."
    ),
    #: The token endpoint's certificate is for another name.
    "SMTP_SENDERS_ADVICE_TOKEN_TLS_WRONG_NAME": (
        "The token endpoint's certificate is for another name than the host in the Token "
        "URL. Use the exact Token URL your provider documents."
    ),
    #: TLS with the token endpoint failed for another reason.
    "SMTP_SENDERS_ADVICE_TOKEN_TLS_FAILED": (
        "A secure connection to the token endpoint could not be set up: its certificate "
        "may have expired, or it offers no TLS version we accept."
    ),
    #: The token URL answered with a redirect (never followed).
    "SMTP_SENDERS_ADVICE_TOKEN_REDIRECT": (
        "The Token URL answered with a redirect, which we do not follow. Enter the token "
        "endpoint's own URL, as your provider documents it."
    ),
    #: The token endpoint answered 5xx without an OAuth2 error.
    "SMTP_SENDERS_ADVICE_TOKEN_SERVER_ERROR": (
        "The token endpoint has a problem of its own. Try again in a few minutes; if it "
        "lasts, check your provider's status page."
    ),
    #: Another HTTP error, or a reply that is not HTTP.
    "SMTP_SENDERS_ADVICE_TOKEN_HTTP_ERROR": (
        "The Token URL did not answer as an OAuth2 token endpoint does. Check the Token URL."
    ),
    #: A 2xx reply that is not JSON (a web page, say).
    "SMTP_SENDERS_ADVICE_TOKEN_NOT_JSON": (
        "The Token URL answered with something other than an OAuth2 token response (a web "
        "page, perhaps). Check the Token URL."
    ),
    #: JSON without a usable Bearer access token, or a reply too large.
    "SMTP_SENDERS_ADVICE_TOKEN_BAD_RESPONSE": (
        "The token endpoint's answer holds no usable access token (a Bearer token is "
        "required), or it is too large. Check the Token URL and that the client issues "
        "Bearer access tokens."
    ),
    #: Microsoft Entra AADSTS7000215: the client secret is wrong.
    "SMTP_SENDERS_ADVICE_TOKEN_BAD_SECRET": (
        "Microsoft Entra refused the Client Secret. Copy the secret's Value, not its Secret "
        "ID (Microsoft Entra admin center, App registrations, your app, Certificates & "
        "secrets). The Value shows only when a secret is created: if it is lost, create a "
        "new secret."
    ),
    #: Microsoft Entra AADSTS7000222: the client secret has expired.
    "SMTP_SENDERS_ADVICE_TOKEN_SECRET_EXPIRED": (
        "The Client Secret has expired. In the Microsoft Entra admin center (App "
        "registrations, your app, Certificates & secrets), create a new client secret and "
        "enter its Value here."
    ),
    #: Microsoft Entra AADSTS700016: no application with this Client ID in the tenant.
    "SMTP_SENDERS_ADVICE_TOKEN_APP_NOT_FOUND": (
        "Microsoft Entra found no application with this Client ID in this tenant. Copy the "
        "Application (client) ID and the Directory (tenant) ID from the app's Overview page "
        "in App registrations; an app from another tenant must first be added to this one "
        "by its administrator."
    ),
    #: Microsoft Entra AADSTS90002 or AADSTS900023: no such tenant.
    "SMTP_SENDERS_ADVICE_TOKEN_TENANT_NOT_FOUND": (
        "Microsoft Entra does not know this Tenant ID. Use the Directory (tenant) ID from "
        "the app's Overview page, or the tenant's domain (such as contoso.onmicrosoft.com)."
    ),
    #: The scope was refused (AADSTS70011, AADSTS1002012, invalid_scope).
    "SMTP_SENDERS_ADVICE_TOKEN_BAD_SCOPE": (
        "The token endpoint refused the scope. Microsoft 365 needs "
        "https://outlook.office365.com/.default and Google Workspace https://mail.google.com/; "
        "for another provider, use the scope it documents for SMTP."
    ),
    #: Microsoft Entra AADSTS65001: no admin consent.
    "SMTP_SENDERS_ADVICE_TOKEN_CONSENT_MISSING": (
        "An administrator has not consented to the app's permission. In the Microsoft Entra "
        "admin center (App registrations, your app, API permissions), add Office 365 "
        "Exchange Online > Application permissions > SMTP.SendAsApp, then Grant admin "
        "consent."
    ),
    #: Microsoft Entra AADSTS7000112: the application is disabled in the tenant.
    "SMTP_SENDERS_ADVICE_TOKEN_APP_DISABLED": (
        "The application is disabled in this tenant. In the Microsoft Entra admin center "
        "(Enterprise applications, your app, Properties), set \"Enabled for users to sign "
        "in\" to Yes."
    ),
    #: Microsoft Entra AADSTS53003: blocked by Conditional Access.
    "SMTP_SENDERS_ADVICE_TOKEN_BLOCKED_BY_POLICY": (
        "A Conditional Access policy blocked the token request. In the Microsoft Entra admin "
        "center, the service principal sign-in logs name the policy; allow this app, or "
        "this portal's network location, in it."
    ),
    #: Google: the service account key was deleted, disabled or expired.
    "SMTP_SENDERS_ADVICE_TOKEN_KEY_REVOKED": (
        "Google refused the service account key: it (or its service account) was deleted "
        "or disabled. In the Google Cloud console (IAM & Admin, Service Accounts, your "
        "account, Keys), create a new JSON key and upload it here."
    ),
    #: Google: the user to send as is not in the Workspace.
    "SMTP_SENDERS_ADVICE_TOKEN_UNKNOWN_USER": (
        "Google does not know the user to send as. Use the primary email address of an "
        "active user of the Google Workspace domain that granted the delegation."
    ),
    #: Google unauthorized_client: no domain-wide delegation for the scope.
    "SMTP_SENDERS_ADVICE_TOKEN_DELEGATION_MISSING": (
        "Domain-wide delegation is not granted to this service account. In the Google Admin "
        "console (Security, Access and data control, API controls, Manage Domain Wide "
        "Delegation), add the service account's Client ID (the number in the key file, not "
        "its email) with the scope https://mail.google.com/."
    ),
    #: Google: the assertion's times are outside Google's window (a wrong clock).
    "SMTP_SENDERS_ADVICE_TOKEN_CLOCK_SKEW": (
        "Google refused the signed request as out of date: the clock of the portal's server "
        "is probably wrong. Its operator must synchronise it (NTP)."
    ),
    #: RFC 6749 invalid_client.
    "SMTP_SENDERS_ADVICE_TOKEN_BAD_CLIENT": (
        "The token endpoint did not accept the client: check the Client ID and the Client "
        "Secret with your provider."
    ),
    #: RFC 6749 invalid_grant.
    "SMTP_SENDERS_ADVICE_TOKEN_BAD_GRANT": (
        "The token endpoint refused the grant: check the credentials, and that the client "
        "may get tokens for this account."
    ),
    #: RFC 6749 unauthorized_client.
    "SMTP_SENDERS_ADVICE_TOKEN_UNAUTHORIZED_CLIENT": (
        "The client may not get tokens this way. In your provider's settings for this "
        "client, allow the client credentials grant (service accounts)."
    ),
    #: RFC 6749 unsupported_grant_type.
    "SMTP_SENDERS_ADVICE_TOKEN_UNSUPPORTED_GRANT": (
        "The token endpoint does not offer the grant this sender needs (client "
        "credentials). Check the Token URL, and that your provider offers that grant."
    ),
    #: RFC 6749 invalid_request.
    "SMTP_SENDERS_ADVICE_TOKEN_BAD_REQUEST": (
        "The token endpoint found the request incomplete or malformed. Check the Client ID, "
        "the scope and the Token URL."
    ),
    #: Any other refusal.
    "SMTP_SENDERS_ADVICE_TOKEN_REFUSED": (
        "The token endpoint refused to issue an access token. Check the Client ID, the "
        "secret and the scope with your provider."
    ),
}

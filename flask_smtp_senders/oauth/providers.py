"""The providers' fixed endpoints and scopes, and a tenant's token URL (the checks of
what an administrator types for them are :mod:`flask_smtp_senders.provider_fields`'s).

Why checked before use: the tenant goes into a URL path and the token URL is where a
secret will be sent; a slash, a percent sign or a dot-only segment in a tenant would
change which URL that is, and a token URL must be https with a real host.
"""

from __future__ import annotations

from ..provider_fields import check_tenant, check_token_url

#: Microsoft Entra's sign-in host (another for a sovereign cloud).
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
#: What an application asks for to send by SMTP as Microsoft 365 (client credentials).
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
#: Google's token endpoint for service accounts.
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
#: Gmail by SMTP, IMAP and POP (the only scope Google takes for XOAUTH2 on SMTP).
GOOGLE_SCOPE = "https://mail.google.com/"

def microsoft_token_url(tenant: str, authority: str = MICROSOFT_AUTHORITY) -> str:
    """The v2.0 token endpoint of a tenant at an authority. ValueError for a tenant that
    is neither a GUID nor a domain, or an authority that is not an https URL."""
    checked = check_tenant(tenant)
    base = check_token_url(authority).rstrip("/")
    if "?" in base:
        raise ValueError("The authority must not have a query.")
    return f"{base}/{checked}/oauth2/v2.0/token"

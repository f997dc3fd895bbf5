"""OAuth2 access tokens for the senders that sign in with XOAUTH2: Microsoft 365 and
"Custom Server with OAuth2" (client credentials), Google Workspace (a service account's
JWT bearer grant). A part beside :mod:`~flask_smtp_senders.smtp`: it fetches a token
over HTTPS under the same destination policy and deadline, and knows nothing of Flask,
the store or the SMTP exchange (which takes the token as an
:class:`~flask_smtp_senders.sealed.AccessToken`).
"""

from __future__ import annotations

from .advice import ADVICE_KEYS
from .endpoint import EndpointOptions, HTTPReply, post_form
from .errors import STAGES, TokenError
from .grants import ClientCredentials, IssuedToken, ServiceAccount, fetch_token
from .keys import ServiceAccountKey, parse_service_account_key
from .providers import (
    GOOGLE_SCOPE,
    GOOGLE_TOKEN_URL,
    MICROSOFT_AUTHORITY,
    MICROSOFT_SCOPE,
    check_tenant,
    check_token_url,
    microsoft_token_url,
)

__all__ = [
    "ADVICE_KEYS", "GOOGLE_SCOPE", "GOOGLE_TOKEN_URL", "MICROSOFT_AUTHORITY",
    "MICROSOFT_SCOPE", "STAGES", "ClientCredentials", "EndpointOptions",
    "HTTPReply", "IssuedToken", "ServiceAccount", "ServiceAccountKey", "TokenError",
    "check_tenant", "check_token_url", "fetch_token", "microsoft_token_url",
    "parse_service_account_key", "post_form",
]

"""What each Provider Type needs beyond the fields: the rules of its secret (a password, a
client secret, a service account key) and the token request its settings make.

Why apart from the token cache (:mod:`.tokens`): which grant, which URL and which scope a
provider uses is knowledge of the providers; when to ask is the cache's business.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..domain import Provider
from ..errors import InvalidSenderData
from ..oauth import (
    GOOGLE_SCOPE,
    MICROSOFT_SCOPE,
    ClientCredentials,
    ServiceAccount,
    microsoft_token_url,
    parse_service_account_key,
)
from ..sealed import Secret
from ..validation import SenderSettings, validate_password

#: The most a service account key file may hold (Google's are about 2.3 KB).
MAX_KEY_FILE = 16 * 1024


@dataclass(frozen=True)
class TokenEndpoints:
    """Where the providers' tokens come from (configurable for tests and sovereign
    clouds: ``SMTP_SENDERS_MICROSOFT_AUTHORITY``, ``SMTP_SENDERS_GOOGLE_TOKEN_URL``)."""

    microsoft_authority: str
    google_token_url: str


def checked_secret(provider: Provider, value: str | None) -> str:
    """The secret as typed, by the rules of its provider: a password or a client secret
    (required, bounded, used exactly), or a service account key that must load. Raises
    InvalidSenderData on the "password" field, never quoting the value."""
    if provider is not Provider.GOOGLE:
        return validate_password(value)
    if not value or not isinstance(value, str):
        return validate_password(value)  # its "required" and "not text" messages
    if len(value) > MAX_KEY_FILE:
        raise InvalidSenderData({"password": "A service account key file holds at most "
                                             f"{MAX_KEY_FILE // 1024} KB."})
    try:
        parse_service_account_key(value)
    except ValueError as exc:
        raise InvalidSenderData({"password": str(exc)}) from None
    return value


def with_secret_facts(settings: SenderSettings, secret: str) -> SenderSettings:
    """The settings with what the secret itself says: a Google sender's Client ID is its
    key's (shown in the list, named to the Google admin, and bound with the key)."""
    if settings.provider_type is not Provider.GOOGLE:
        return settings
    return replace(settings, client_id=parse_service_account_key(secret).client_id)


def token_url(settings: SenderSettings, endpoints: TokenEndpoints) -> str:
    """Where this sender's token requests go."""
    provider = settings.provider_type
    if provider is Provider.MICROSOFT365:
        return microsoft_token_url(settings.tenant_id, endpoints.microsoft_authority)
    if provider is Provider.GOOGLE:
        return endpoints.google_token_url
    return settings.token_url


def grant_for(settings: SenderSettings, secret: Secret,
              endpoints: TokenEndpoints) -> ClientCredentials | ServiceAccount:
    """The token request of an OAuth2 sender; ValueError for a Custom Server."""
    provider = settings.provider_type
    url = token_url(settings, endpoints)
    if provider is Provider.MICROSOFT365:
        return ClientCredentials(url, settings.client_id, secret, MICROSOFT_SCOPE,
                                 auth_method="client_secret_post")
    if provider is Provider.GOOGLE:
        return ServiceAccount(url, secret, settings.username, GOOGLE_SCOPE)
    if provider is Provider.OAUTH2:
        # RFC 6749 s2.3.1: every authorization server must accept HTTP Basic.
        return ClientCredentials(url, settings.client_id, secret, settings.scope,
                                 auth_method="client_secret_basic")
    raise ValueError("a Custom Server signs in with its password, not a token")

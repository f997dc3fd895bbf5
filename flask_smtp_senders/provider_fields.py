"""The rules of the OAuth2 sign-in fields (Tenant ID, Client ID, Token URL, Scope, the
secret's expiry date), which :func:`flask_smtp_senders.validation.validate_settings`
applies by Provider Type.

Why apart from the generic field rules: each provider needs other fields, and a field a
provider does not use must stay empty (a Custom Server sender never carries a tenant, so
nothing stored for one provider is ever read for another). Pure string checks: nothing
here looks anything up.
"""

from __future__ import annotations

import datetime
import re

from .domain import Provider
from .https_urls import dns_name, parse_https_url
from .text_checks import MSG_REQUIRED, check_text, too_long

MAX_TENANT = 128
MAX_CLIENT_ID = 255
MAX_TOKEN_URL = 2048
MAX_SCOPE = 1024

MSG_PROVIDER = "Choose a Provider Type: Custom Server, Microsoft 365, Google Workspace or " \
    "Custom Server with OAuth2."
MSG_NOT_FOR_PROVIDER = "This provider type does not use this field: leave it empty."
MSG_TENANT = ("Enter the Tenant ID: the Directory (tenant) ID, a GUID, or a domain such as "
              "contoso.onmicrosoft.com.")
MSG_MICROSOFT_CLIENT_ID = "Enter the Application (client) ID: a GUID."
MSG_CLIENT_ID = "Enter the client ID without spaces or control characters."
MSG_SCOPE = "Enter scopes separated by single spaces, without quotes or backslashes."
MSG_DATE = "Enter a date as YYYY-MM-DD."

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}")
#: RFC 6749 s3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), joined by single spaces.
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

#: Which OAuth2 fields each provider type uses, and which of them it requires.
USED: dict[Provider, frozenset[str]] = {
    Provider.CUSTOM: frozenset(),
    Provider.MICROSOFT365: frozenset({"tenant_id", "client_id", "secret_expires"}),
    Provider.GOOGLE: frozenset({"client_id", "secret_expires"}),
    Provider.OAUTH2: frozenset({"client_id", "token_url", "scope", "secret_expires"}),
}
REQUIRED: dict[Provider, frozenset[str]] = {
    Provider.CUSTOM: frozenset(),
    Provider.MICROSOFT365: frozenset({"tenant_id", "client_id"}),
    Provider.GOOGLE: frozenset(),
    Provider.OAUTH2: frozenset({"client_id", "token_url"}),
}
OAUTH_FIELDS = ("tenant_id", "client_id", "token_url", "scope", "secret_expires")


def provider_of(value: object) -> Provider:
    """The Provider Type a value names ("" is Custom Server); ValueError otherwise."""
    if value in (None, ""):
        return Provider.CUSTOM
    try:
        return Provider(value)
    except ValueError:
        raise ValueError(MSG_PROVIDER) from None


def check_tenant(tenant: str) -> str:
    """A Directory (tenant) ID: a GUID, or a domain of the tenant such as
    contoso.onmicrosoft.com. ValueError with a reason otherwise."""
    if not isinstance(tenant, str) or not tenant:
        raise ValueError("Enter the Tenant ID.")
    if _GUID.fullmatch(tenant):
        return tenant.lower()
    if not tenant.isascii() or "." not in tenant.strip(".") or len(tenant) > MAX_TENANT:
        raise ValueError(MSG_TENANT)
    try:
        name = dns_name(tenant)
    except ValueError:
        raise ValueError(MSG_TENANT) from None
    if not name.rsplit(".", 1)[-1].isalpha():
        raise ValueError("The Tenant ID's domain must end in a top-level domain.")
    return name


def check_client_id(value: str, provider: Provider) -> str:
    if provider is Provider.MICROSOFT365:
        if not _GUID.fullmatch(value):
            raise ValueError(MSG_MICROSOFT_CLIENT_ID)
        return value.lower()
    problem = check_text(value, MAX_CLIENT_ID)
    if problem:
        raise ValueError(problem)
    if any(c.isspace() for c in value):
        raise ValueError(MSG_CLIENT_ID)
    return value


def check_token_url(url: str) -> str:
    """A token URL as typed, if it is one we may send a secret to: https, a host, no
    user name or password, no fragment, no whitespace or control characters, at most
    2048 characters (:data:`.urls.MAX_URL`). ValueError with the reason otherwise."""
    parse_https_url(url)
    return url


def check_scope(value: str) -> str:
    if len(value) > MAX_SCOPE:
        raise ValueError(too_long(MAX_SCOPE))
    if not _SCOPE.fullmatch(value):
        raise ValueError(MSG_SCOPE)
    return value


def check_date(value: str) -> str:
    """A calendar date as YYYY-MM-DD (ISO 8601)."""
    if not _DATE.fullmatch(value):
        raise ValueError(MSG_DATE)
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        raise ValueError(MSG_DATE) from None
    return value


def check_field(name: str, value: str, provider: Provider) -> str:
    """One OAuth2 field, already stripped, for ``provider``: "" when unused and empty."""
    if name not in USED[provider]:
        if value:
            raise ValueError(MSG_NOT_FOR_PROVIDER)
        return ""
    if not value:
        if name in REQUIRED[provider]:
            raise ValueError(MSG_REQUIRED)
        return ""
    if name == "tenant_id":
        return check_tenant(value)
    if name == "client_id":
        return check_client_id(value, provider)
    if name == "token_url":
        return check_token_url(value)
    if name == "scope":
        return check_scope(value)
    return check_date(value)

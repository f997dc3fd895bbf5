"""The two grants our OAuth2 senders use, and the token request each makes.

Why these two: Microsoft 365 (and any "Custom Server with OAuth2") gives an application
with no user a token by the client credentials grant (RFC 6749 s4.4); Google Workspace
gives a service account one by the JWT bearer grant (RFC 7523 s2.1), the assertion
signed with the account's key and naming the user to send as (domain-wide delegation).
Both are one form POST (:func:`.endpoint.post_form`) and one strict reading of the reply
(:mod:`.responses`). Nothing here keeps a secret or a token.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote_plus

from ..sealed import Secret
from ..text_checks import CONTROL
from .endpoint import EndpointOptions, post_form
from .keys import parse_service_account_key, signed_assertion
from .responses import IssuedToken, issued_token

__all__ = ["ClientCredentials", "IssuedToken", "ServiceAccount", "fetch_token"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class ClientCredentials:
    """RFC 6749 s4.4: a client ID and secret for a token (Microsoft 365, generic).
    ``client_secret_post`` sends them in the form (what Microsoft documents);
    ``client_secret_basic`` in an HTTP Basic header (what every server must accept)."""

    token_url: str
    client_id: str
    client_secret: Secret
    scope: str
    auth_method: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"


@dataclass(frozen=True)
class ServiceAccount:
    """RFC 7523 s2.1: a Google service account's key (the key file's JSON text) signs an
    assertion for ``subject``, the Workspace user to send as."""

    token_url: str
    key: Secret
    subject: str
    scope: str


def fetch_token(grant: ClientCredentials | ServiceAccount, options: EndpointOptions,
                now: Callable[[], float] = time.time) -> IssuedToken:
    """An access token for the grant. Raises TokenError (see :mod:`.errors`), and
    ValueError for a grant that cannot be sent (a control character in a field, a key
    that does not load)."""
    started = now()
    if isinstance(grant, ServiceAccount):
        return _service_account(grant, options, started)
    if isinstance(grant, ClientCredentials):
        return _client_credentials(grant, options, started)
    raise TypeError("fetch_token takes ClientCredentials or ServiceAccount")


def _client_credentials(grant: ClientCredentials, options: EndpointOptions,
                        started: float) -> IssuedToken:
    _check_fields(grant.client_id)
    _check_fields(grant.scope, required=False)
    secret = grant.client_secret.reveal()
    form = {"grant_type": "client_credentials"}
    headers: dict[str, str] = {}
    if grant.auth_method == "client_secret_basic":
        headers["Authorization"] = basic_authorization(grant.client_id, secret)
    elif grant.auth_method == "client_secret_post":
        form.update(client_id=grant.client_id, client_secret=secret)
    else:
        raise ValueError("auth_method is client_secret_post or client_secret_basic")
    if grant.scope:  # optional (RFC 6749 s4.4.2); Microsoft needs it
        form["scope"] = grant.scope
    reply = post_form(grant.token_url, form, options, headers)
    return issued_token(reply, started, sent=(secret, grant.client_id))


def _service_account(grant: ServiceAccount, options: EndpointOptions,
                     started: float) -> IssuedToken:
    _check_fields(grant.subject, grant.scope)
    key = parse_service_account_key(grant.key.reveal())
    assertion = signed_assertion(key, grant.subject, grant.scope, grant.token_url, started)
    reply = post_form(grant.token_url, {"grant_type": JWT_BEARER, "assertion": assertion},
                      options)
    return issued_token(reply, started, google=True, sent=(assertion,))


def basic_authorization(client_id: str, secret: str) -> str:
    """RFC 6749 s2.3.1: the ID and secret each form-urlencoded, then HTTP Basic."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


def _check_fields(*values: str, required: bool = True) -> None:
    for value in values:
        if not isinstance(value, str) or (required and not value) or CONTROL.search(value):
            raise ValueError("a grant field is empty or holds a control character")

"""What a token endpoint's reply means: an access token (RFC 6749 s5.1) or a refusal
(s5.2), read strictly.

Why strict: the token goes on to an SMTP server inside an AUTH line, so it must be an
RFC 6750 bearer token (the characters XOAUTH2 and OAUTHBEARER can carry); a reply that
is not what the RFC says is a failure with advice, not a guess. The endpoint's own
words (``error_description``, the body) reach DEBUG records only, scrubbed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..sealed import AccessToken
from . import advice
from .errors import TokenError
from .http11 import HTTPReply
from .scrubbing import scrub

log = logging.getLogger(__name__)

#: The longest access token we take (what fits an AUTH line, as the SMTP side allows).
MAX_TOKEN = 8192
#: expires_in when the endpoint does not say (RFC 6749 s5.1 makes it optional).
DEFAULT_LIFETIME = 3600
#: The bounds we hold expires_in to: a minute (a token must outlive the sending it is
#: for) and a day (a cache must not keep a token for ever on an endpoint's word).
MIN_LIFETIME, MAX_LIFETIME = 60, 86400
# RFC 6750 s2.1 b64token.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_DIGITS = re.compile(r"[0-9]{1,15}")


@dataclass(frozen=True)
class IssuedToken:
    """An access token and when it expires (epoch seconds, by our clock)."""

    token: AccessToken
    expires_at: float


def issued_token(reply: HTTPReply, started: float, *, google: bool = False,
                 sent: Iterable[str] = ()) -> IssuedToken:
    """The token of a 2xx reply, or the TokenError the reply stands for. ``started``:
    when the request went out (expiry counts from then); ``google``: the request was a
    Google service account's; ``sent``: secrets we sent, cut out of DEBUG records."""
    if not 200 <= reply.status < 300:
        raise refusal(reply, google=google, sent=sent)
    data = _json_object(reply)
    if data is None:
        raise TokenError("response", status=reply.status, advice="TOKEN_NOT_JSON")
    token = data.get("access_token")
    token_type = data.get("token_type")
    lifetime = _lifetime(data.get("expires_in", DEFAULT_LIFETIME))
    if not (isinstance(token, str) and len(token) <= MAX_TOKEN
            and _BEARER_TOKEN.fullmatch(token)):
        log.debug("the token endpoint's reply holds no bearer access token")
        raise TokenError("response", status=reply.status, advice="TOKEN_BAD_RESPONSE")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        log.debug("the token endpoint issued a token of type %s",
                  scrub(token_type, sent) if isinstance(token_type, str) else "(none)")
        raise TokenError("response", status=reply.status, advice="TOKEN_BAD_RESPONSE")
    if lifetime is None:
        log.debug("the token endpoint's expires_in is not a number of seconds")
        raise TokenError("response", status=reply.status, advice="TOKEN_BAD_RESPONSE")
    return IssuedToken(AccessToken(token), started + lifetime)


def refusal(reply: HTTPReply, *, google: bool = False, sent: Iterable[str] = ()) -> TokenError:
    """The TokenError of a reply that is not a 2xx: an RFC 6749 s5.2 error (stage
    "refused"), or an HTTP failure without one (stage "http")."""
    data = _json_object(reply)
    error = data.get("error") if data is not None else None
    if not isinstance(error, str) or not error:
        log.debug("the token endpoint answered HTTP %s (%s, %d bytes) with no OAuth2 "
                  "error", reply.status, scrub(reply.content_type), len(reply.body))
        return TokenError("http", status=reply.status, advice=advice.for_status(reply.status))
    description = data.get("error_description")
    description = description if isinstance(description, str) else None
    code = advice.microsoft_code(data.get("error_codes"), description)
    key = advice.for_refusal(error, description, code, google=google)
    failure = TokenError("refused", status=reply.status, error=error,
                         provider_code=f"AADSTS{code}" if code is not None else None,
                         advice=key)
    log.debug("the token endpoint refused (HTTP %s, error %s, code %s): %s", reply.status,
              failure.error or "(not a code)", failure.provider_code or "(none)",
              scrub(description, sent))
    return failure


def _json_object(reply: HTTPReply) -> dict[str, Any] | None:
    """The body as a JSON object, or None."""
    try:
        data = json.loads(reply.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _lifetime(value: object) -> int | None:
    """expires_in in seconds, held to [MIN_LIFETIME, MAX_LIFETIME]; None if not a whole
    number (an int, or a string of digits as some endpoints send)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int):
        return None
    return max(MIN_LIFETIME, min(MAX_LIFETIME, value))

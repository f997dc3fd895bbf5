"""XOAUTH2 and OAUTHBEARER (RFC 7628) for the ScriptedServer (tests/support/scripted_smtp.py):
the server side of OAuth2 sign-in, checking the bearer token against a table it is given.

Why: aiosmtpd speaks neither mechanism, and what the client must get right (the exact
initial response, answering the error challenge once and with the right empty answer,
never a second time) can only be proved against a server that parses what it gets as
Google's and Microsoft's do and refuses a bad token the way they do: optionally with the
error challenge (``334`` and base64 JSON naming the status), then a 535.

:class:`OAuthMechanisms` is mixed into the ScriptedServer's aiosmtpd handler, where
aiosmtpd finds ``auth_*`` methods; it reads the server's ``tokens`` (or, when set, its
``token_check(user, token) -> bool``, such as a token server's ``valid``), ``error_challenges``,
``error_challenge`` and ``token_refusal`` and records the decoded answers to the error
challenge in ``error_answers``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from typing import Any

from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword

#: The OAuth mechanisms a ScriptedServer can offer.
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
#: The AUTH line a server must accept (RFC 4954 s4); aiosmtpd's own limit is 512.
AUTH_LINE_LIMIT = 12288
#: Who may sign in with which token, unless a server is given its own table.
DEFAULT_TOKENS = {"alice": "ya29.a0AfB_byC-alice.token~0123456789+/="}
#: The error challenge Google sends for a refused token (RFC 7628 s3.2.2), base64.
ERROR_CHALLENGE = base64.b64encode(json.dumps(
    {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}).encode())
#: The final reply to a refused token.
TOKEN_REFUSAL = "535 5.7.8 Username and Password not accepted"

_XOAUTH2 = re.compile(rb"user=([^\x01]*)\x01auth=Bearer ([^\x01 ]+)\x01\x01")
_OAUTHBEARER = re.compile(rb"n,a=([^,\x01]*),\x01host=[^\x01]*\x01port=[0-9]+"
                          rb"\x01auth=Bearer ([^\x01 ]+)\x01\x01")
_GS2_ESCAPE = re.compile(r"=(2C|3D)")


def gs2_unescape(name: str) -> str:
    """A GS2 saslname as the user it names: ``=2C`` is ``,`` and ``=3D`` is ``=``."""
    return _GS2_ESCAPE.sub(lambda match: "," if match[1] == "2C" else "=", name)


def _initial_response(args: list[str], pattern: re.Pattern[bytes]) -> tuple[str, str] | None:
    """(user, token) of ``AUTH <MECHANISM> <initial response>``, or None if malformed."""
    if len(args) != 2:
        return None
    try:
        decoded = base64.b64decode(args[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    match = pattern.fullmatch(decoded)
    if match is None:
        return None
    return match[1].decode("utf-8", "replace"), match[2].decode("ascii", "replace")


class OAuthMechanisms:
    """aiosmtpd handler mechanisms (``auth_*``, called with the session): XOAUTH2 and
    OAUTHBEARER, each with its initial response only, as the client must send them."""

    server: Any  # the ScriptedServer

    async def auth_XOAUTH2(self, smtp: Any, args: list[str]) -> AuthResult:
        return await self._judge(smtp, _initial_response(args, _XOAUTH2))

    async def auth_OAUTHBEARER(self, smtp: Any, args: list[str]) -> AuthResult:
        found = _initial_response(args, _OAUTHBEARER)
        return await self._judge(smtp, found and (gs2_unescape(found[0]), found[1]))

    async def _judge(self, smtp: Any, found: tuple[str, str] | None) -> AuthResult:
        """235 for a token of the table; else the error challenge as scripted, then the
        refusal. A malformed initial response gets 501."""
        server = self.server
        if found is None:
            await smtp.push("501 5.5.2 Malformed initial response")
            return AuthResult(success=False, handled=True)
        user, token = found
        if server.token_check is not None:  # e.g. a token server's valid(user, token)
            accepted = server.token_check(user, token) is True
        else:
            expected = server.tokens.get(user)
            accepted = expected is not None and hmac.compare_digest(expected.encode(),
                                                                    token.encode())
        if accepted:
            return AuthResult(success=True, handled=False,
                              auth_data=LoginPassword(user.encode(), b""))
        for _ in range(server.error_challenges):
            lines = len(server.auth_lines)
            answer = await smtp.challenge_auth(server.error_challenge, encode_to_b64=False)
            if len(server.auth_lines) == lines:  # no line came: the client hung up
                return AuthResult(success=False, handled=True)
            if answer is MISSING:  # "*" or not base64: challenge_auth answered 501
                return AuthResult(success=False, handled=True)
            server.error_answers.append(answer)
        return AuthResult(success=False, handled=False, message=server.token_refusal)

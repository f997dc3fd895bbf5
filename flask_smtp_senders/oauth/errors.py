"""Why a token request failed, in values that are safe to show and to log.

Why a class of its own: the token endpoint answers with text of its own (an
``error_description``, a body), which may echo what we sent (a client ID, sometimes a
secret) and is written by whoever runs the endpoint. A :class:`TokenError` keeps only
what we can vouch for: the stage, the HTTP status, the RFC 6749 ``error`` code when it is
a short token, the provider's code (``AADSTS7000215``) and the name of our advice. Its
text is built from those alone.
"""

from __future__ import annotations

import re

#: Where a token request can fail, in the order it gets there.
STAGES = ("url", "resolve", "destination", "connect", "tls", "http", "response",
          "refused", "timeout")

#: What an RFC 6749 s5.2 ``error`` (or a provider code) may look like to be kept.
SAFE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class TokenError(Exception):
    """The token endpoint gave no usable access token.

    ``stage``: one of :data:`STAGES`. ``status``: the HTTP status, if a reply came.
    ``error``: the RFC 6749 s5.2 ``error`` code, only if it is a short token.
    ``provider_code``: Microsoft Entra's code (``AADSTS7000215``), if any. ``advice``: a
    key such as ``TOKEN_BAD_SECRET`` whose sentence is ``SMTP_SENDERS_ADVICE_<advice>``.
    """

    def __init__(self, stage: str, *, status: int | None = None, error: str | None = None,
                 provider_code: str | None = None, advice: str | None = None) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown token stage {stage!r}")
        self.stage = stage
        self.status = status
        self.error = error if error is not None and SAFE_CODE.fullmatch(error) else None
        self.provider_code = (provider_code if provider_code is not None
                              and SAFE_CODE.fullmatch(provider_code) else None)
        self.advice = advice
        super().__init__(self._text())

    def _text(self) -> str:
        text = f"the token request failed at {self.stage}"
        if self.status is not None:
            text += f" (HTTP {self.status})"
        codes = [code for code in (self.error, self.provider_code) if code]
        if codes:
            text += ": " + ", ".join(codes)
        return text

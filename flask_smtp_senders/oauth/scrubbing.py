"""What of a token endpoint's own text may reach a DEBUG log line.

Why: an ``error_description`` helps whoever debugs a refusal, but the endpoint writes
it, and it may echo what we sent (a secret, an assertion) or carry a token. Only DEBUG
records get it, and only after this: what we sent is cut out, so is anything long
enough to be a credential, and control characters cannot forge log lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The most of a provider's text a log line gets.
MAX_LOGGED = 300
_TOKENISH = re.compile(r"[A-Za-z0-9._~+/-]{20,}=*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
REDACTED = "[redacted]"


def scrub(text: object, known: Iterable[str] = ()) -> str:
    """``text`` fit for a DEBUG record: without ``known`` values (what we sent that must
    not show), without anything that looks like a token, on one line, bounded."""
    if not isinstance(text, str):
        return ""
    for value in sorted({v for v in known if v}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _CONTROL.sub(" ", text)
    text = _TOKENISH.sub(REDACTED, text)
    if len(text) > MAX_LOGGED:
        text = text[:MAX_LOGGED] + "..."
    return text

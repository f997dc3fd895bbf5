"""Reading a sender's credential: the stored password (or an OAuth2 sender's client
secret or key) only for the destination it is bound to, and an OAuth2 sender's access
token.

Why apart from the rest of the service: this is the one guarded read every send, test
and check goes through; what it refuses and why is read on its own. Nothing here is
decrypted before the binding was verified.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..crypto import PasswordCipher
from ..errors import CredentialNotBound, PasswordUnreadable, TokenUnavailable
from ..oauth import TokenError
from ..sealed import Credential, Secret
from ..storage.base import Sender
from ..texts import message
from .tokens import TokenSource

log = logging.getLogger(__name__)


def problem(cipher: PasswordCipher, sender: Sender) -> str | None:
    """Why the stored secret cannot be used now, as a message name, decided without
    decrypting it: None, "password_reentry" / "secret_reentry" (no configured key signed
    the token: wrong keys or corruption) or "password_unbound" / "secret_unbound" (it is
    not bound to the sender's current settings). Either way it must be re-entered;
    "secret" names an OAuth2 sender's client secret or key."""
    what = "secret" if sender.settings.provider_type.uses_oauth else "password"
    if not cipher.authentic(sender.password):
        return f"{what}_reentry"
    if not cipher.verify(sender.destination, sender.password, sender.password_binding):
        return f"{what}_unbound"
    return None


def secret(cipher: PasswordCipher, texts: Mapping[str, str], sender: Sender) -> Secret:
    """The sender's stored secret, for its current destination only.

    The binding stored with it must match the Server Name, Port, mode and Username (and
    an OAuth2 sender's provider, token URL, tenant, client ID and scope) about to be
    used, or the secret is refused before it is even decrypted: a row changed behind our
    back (SQL, a faulty store) cannot send it anywhere else. Raises CredentialNotBound (a
    PasswordUnreadable), or PasswordUnreadable when no configured key signed the token
    at all (wrong keys, corruption: that is the message that helps then; either way
    nothing is decrypted or sent).
    """
    found = problem(cipher, sender) or ""
    if found.endswith("_reentry"):
        raise PasswordUnreadable("no configured key decrypts this sender's password")
    if found.endswith("_unbound"):
        log.warning("sender %s: the stored password is not bound to its current server "
                    "settings; it is not used until it is re-entered", sender.id)
        raise CredentialNotBound(
            f"sender {sender.id}: the stored password is not bound to these settings",
            message(texts, found))
    return cipher.decrypt(sender.password)


def credential(cipher: PasswordCipher, texts: Mapping[str, str], tokens: TokenSource,
               sender: Sender, *, fresh: bool = False) -> Credential:
    """What the sender signs in with: its password (Custom Server), or an access token
    from its provider, fetched with its client secret or key (``fresh``: a new one, not
    the cached one). Raises PasswordUnreadable as :func:`secret`, or TokenUnavailable (a
    DeliveryError of stage "token") when the provider gave no token."""
    stored = secret(cipher, texts, sender)
    if not sender.settings.provider_type.uses_oauth:
        return stored
    try:
        return tokens.token_for(sender, stored, fresh=fresh)
    except TokenError as exc:
        log.warning("sender %s: no access token: %s", sender.id, exc)
        raise TokenUnavailable(message(texts, "token_failed"), exc) from None

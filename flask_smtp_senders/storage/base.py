"""The store protocol in plain data: what the extension needs from wherever senders live.

A host can replace the store (``store=`` or the ``smtp_senders_store`` hook); this module
is all it has to satisfy. The protocol is complete: the service calls every method with
every keyword below, so a store is told everything and decides what to keep.

Every write is one transaction: it commits whole or not at all, and ``before_commit``
(used for the audit trail) runs inside it, so a failing audit rolls the change back.

Beside each token a store keeps its ``binding`` (a MAC of the destination and the token,
see :mod:`flask_smtp_senders.crypto`) and hands it back as ``Sender.password_binding``; a
store that loses it makes the sender unusable until its password is re-entered, never
less safe. It may also keep each version's ``settings_fingerprint``, the
``tested_fingerprint`` of the last successful test (``Sender.test_state`` compares them)
and the last connection check; a store that drops them gets the state the last test
result alone gives.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..crypto import Destination
from ..domain import Security, ServerAddress, security_for_port
from ..sealed import EncryptedPassword
from ..validation import SETTING_LABELS, SenderSettings

if TYPE_CHECKING:
    from .schema import Upgrade


def destination(server_name: str, port: int, username: str, *, provider: str = "",
                token_url: str = "", tenant_id: str = "", client_id: str = "",
                scope: str = "") -> Destination:
    """What a password (or an OAuth2 secret) is bound to: the server as stored, the port,
    the mode the port rule gives it (so a port that changes STARTTLS to SMTPS is a new
    destination too), the user it logs in as, and for an OAuth2 secret the provider type,
    token URL, tenant, client ID and scope of its token requests ("" for a password)."""
    oauth = provider not in ("", "custom")
    return Destination(server_name, port, security_for_port(port).value, username,
                       provider=provider if oauth else "",
                       token_url=token_url if oauth else "",
                       tenant_id=tenant_id if oauth else "",
                       client_id=client_id if oauth else "",
                       scope=scope if oauth else "")


def destination_of(settings: SenderSettings) -> Destination:
    """The destination a sender's secret is bound to, from its settings."""
    return destination(settings.server_name, settings.port, settings.username,
                       provider=settings.provider, token_url=settings.token_url,
                       tenant_id=settings.tenant_id, client_id=settings.client_id,
                       scope=settings.scope)


class TestState(str, enum.Enum):
    """Whether the saved settings are the ones a test email last passed with."""

    __test__ = False  # not a pytest test class

    #: No test email has passed (for any version of the settings).
    NEVER = "never"
    #: The saved settings (password included) are the ones of the last passed test.
    TESTED = "tested"
    #: A test passed, but the settings or the password were changed after it.
    CHANGED = "changed"

    @property
    def label(self) -> str:
        return _STATE_LABELS[self]


_STATE_LABELS = {TestState.NEVER: "Never tested", TestState.TESTED: "Tested",
                 TestState.CHANGED: "Changed since last test"}


@dataclass(frozen=True)
class Sender:
    """A saved sender. ``password`` is the encrypted token, redacted in repr."""

    id: int
    settings: SenderSettings
    password: EncryptedPassword = field(repr=False)
    version: int
    created_at: datetime
    updated_at: datetime
    last_test_at: datetime | None = None
    last_test_ok: bool | None = None
    is_default: bool = False
    #: The MAC binding ``password`` (the token) to the destination it was entered for;
    #: None when the store has none (then the password is never used).
    password_binding: str | None = field(default=None, repr=False)
    #: The fingerprint of this version's settings and password (see
    #: crypto.PasswordCipher.fingerprint); None for a row saved before it existed.
    settings_fingerprint: str | None = field(default=None, repr=False)
    #: The settings_fingerprint of the version the last successful test email used.
    tested_fingerprint: str | None = field(default=None, repr=False)
    #: The last connection check (dry run): when, passed or not, and where it stopped.
    last_check_at: datetime | None = None
    last_check_ok: bool | None = None
    last_check_stage: str | None = None
    #: What is wrong with the stored settings (field name -> reason), for a row changed
    #: behind the application's back (an SQL UPDATE, a faulty tool): empty for a sender
    #: saved through the application. Such a sender is listed, marked unusable, and its
    #: Edit page opens with these reasons beside the fields (see
    #: :func:`flask_smtp_senders.storage.stored_settings.stored_settings`).
    problems: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def usable(self) -> bool:
        """Whether the stored settings pass the rules every save applies."""
        return not self.problems

    @property
    def problem_text(self) -> str:
        """The problems in one line, each after its field's label ("" when usable)."""
        return "; ".join(f"{SETTING_LABELS.get(name, name)}: {reason}"
                         for name, reason in self.problems.items())

    @property
    def test_state(self) -> TestState:
        """TESTED when the saved settings are exactly the ones of the last successful
        test email, CHANGED when a test passed but they differ now, NEVER when no test
        passed. A sender with no fingerprint at all (saved before fingerprints existed and
        not saved since, or kept by a store that drops them) falls back to the last
        result: TESTED when it passed, NEVER otherwise (the rule before fingerprints)."""
        tested, saved = self.tested_fingerprint, self.settings_fingerprint
        if tested is None:
            if saved is None:
                return TestState.TESTED if self.last_test_ok else TestState.NEVER
            # A test passed that cannot be tied to this version (recorded without one,
            # or before the upgrade with an edit since): it says nothing of these settings.
            return TestState.CHANGED if self.last_test_ok else TestState.NEVER
        return TestState.TESTED if tested == saved else TestState.CHANGED

    @property
    def test_state_label(self) -> str:
        """The state as the list and the CLI show it: "No passed test" rather than "Never
        tested" once a test was tried and failed (the two read as a contradiction beside
        "Last test failed")."""
        state = self.test_state
        if state is TestState.NEVER and self.last_test_at is not None:
            return "No passed test"
        return state.label

    @property
    def destination(self) -> Destination:
        """What ``password_binding`` must match before the password is used."""
        return destination_of(self.settings)

    @property
    def security(self) -> Security:
        return security_for_port(self.settings.port)

    @property
    def server(self) -> ServerAddress:
        """Where to connect, and as whom."""
        return ServerAddress(self.settings.server_name, self.settings.port,
                             self.settings.username)


BeforeCommit = Callable[[Sender], None]
Reencrypt = Callable[[EncryptedPassword], EncryptedPassword]
#: (the row's destination, its token, its stored binding, the re-encrypted token) -> the
#: binding of the new token; raises CredentialNotBound when the stored one does not verify.
Rebind = Callable[[Destination, EncryptedPassword, str | None, EncryptedPassword], str]


@runtime_checkable
class SenderStore(Protocol):
    """What the extension needs from storage: every method, with every keyword.

    The service always passes ``binding=`` and ``fingerprint=`` to ``add`` and ``update``,
    and ``version=`` and ``fingerprint=`` to ``record_test``, and calls ``record_check``
    after every connection check. A store that keeps no fingerprints or no checks accepts
    them and drops them: its senders then show the state the last test result alone gives
    (see ``Sender.test_state``) and no check result."""

    def list(self) -> list[Sender]: ...

    def get(self, sender_id: int) -> Sender:
        """Raises SenderNotFound."""

    def add(self, settings: SenderSettings, password: EncryptedPassword,
            before_commit: BeforeCommit | None = None, *,
            binding: str | None = None, fingerprint: str | None = None) -> Sender:
        """Store a new sender; ``binding`` is kept with the token and returned as
        ``password_binding`` by every read, ``fingerprint`` (the service's fingerprint of
        these settings and password) as ``settings_fingerprint``."""

    def update(self, sender_id: int, expected_version: int, settings: SenderSettings,
               password: EncryptedPassword,
               before_commit: BeforeCommit | None = None, *,
               binding: str | None = None, fingerprint: str | None = None) -> Sender:
        """Replace settings, token, binding and ``settings_fingerprint`` (``fingerprint``)
        together, in one write. Raises SenderNotFound, or ConcurrentUpdate when the
        version moved on."""

    def delete(self, sender_id: int, expected_version: int | None = None,
               before_commit: BeforeCommit | None = None) -> None: ...

    def record_test(self, sender_id: int, ok: bool, when: datetime, *,
                    version: int | None = None, fingerprint: str | None = None) -> bool:
        """Remember the last test result without bumping the version; return whether it
        was recorded.

        With ``version`` (the version the test used; the service always gives it), a
        compare-and-set: record nothing and return False when the sender was saved or
        deleted since. When ``ok``, also set ``tested_fingerprint`` to the row's
        ``settings_fingerprint``, or to ``fingerprint`` (the service's fingerprint of the
        tested settings, None when it has none) on a row that has none, which then becomes
        its ``settings_fingerprint`` too. Without ``version``, record unconditionally."""

    def record_check(self, sender_id: int, ok: bool, when: datetime,
                     stage: str | None) -> None:
        """Remember the last connection check (``last_check_at``, ``last_check_ok`` and,
        for a failed one, ``last_check_stage``, where it stopped): no version bump, no
        compare-and-set, the test columns untouched (passing it says nothing about
        DATA). A store that keeps no checks does nothing."""

    def set_default(self, sender_id: int,
                    before_commit: BeforeCommit | None = None) -> Sender:
        """Make this sender the default (and no other); raises SenderNotFound. The first
        sender added becomes the default; deleting the default passes it on."""

    def reencrypt(self, transform: Reencrypt,
                  before_commit: Callable[[int, int], None] | None = None, *,
                  progress: Callable[[int], None] | None = None,
                  rebind: Rebind | None = None) -> tuple[int, int]:
        """Apply ``transform`` to every token in one transaction; return (rotated,
        unreadable). ``transform`` raises PasswordUnreadable for tokens it cannot read.

        ``rebind``, when given, is called after ``transform`` with each row's destination,
        old token, stored binding and new token; the binding it returns is written with
        the new token, in the same write. When it raises CredentialNotBound (a
        PasswordUnreadable) the row is left as it was and counted unreadable. Without it,
        bindings are kept as they are.

        ``progress``, when given, is called now and then with the number of tokens
        processed so far (increasing, the last call being the total), so a command line
        can show a progress bar on a large table."""


@runtime_checkable
class SchemaOwner(Protocol):
    """A store that creates and upgrades its own table, as the built-in one does.

    The one optional part, beside SenderStore rather than in it: a host's store whose
    schema lives elsewhere leaves ``create_tables`` out, and then ``flask smtp-senders
    upgrade`` says there is nothing to upgrade and ``SMTP_SENDERS_CREATE_TABLES`` does
    nothing."""

    def create_tables(self, progress: Callable[[str], None] | None = None
                      ) -> Upgrade | None:
        """Create the sender table, or bring it up to this version's schema. ``progress``
        hears a line for each step (the CLI prints them). Returns what was done, or None
        when the store does not say."""


@runtime_checkable
class TokenCache(Protocol):
    """A store that keeps OAuth2 access tokens for every worker of the app, encrypted, as
    the built-in one does (its ``smtp_sender_tokens`` table). Optional like
    :class:`SchemaOwner`: without it, each process keeps its own tokens in memory.

    ``key`` names one sender version; ``token`` is Fernet-encrypted by the caller; the
    expiry is an aware UTC datetime. A store may forget a token at any time (the next
    send fetches a new one), never hand out one after ``expires_at``."""

    def load_token(self, key: str) -> tuple[EncryptedPassword, datetime] | None: ...

    def save_token(self, key: str, sender_id: int, token: EncryptedPassword,
                   expires_at: datetime) -> None: ...

    def drop_token(self, key: str) -> None: ...


"""pluggy hooks: how the host app and its plugins customise flask-smtp-senders.

Each app gets its own plugin manager. Built-in implementations are registered first and
marked ``trylast``; plugins from the ``flask_smtp_senders`` entry-point group come next
(only when the host opts in with ``SMTP_SENDERS_LOAD_ENTRY_POINTS``: installing a package
must not grant access) and the host's ``plugins=`` last, so the host has the final say
(pluggy calls the most recently registered implementation first). docs/hooks.md gives the
trust model of every hook.

When a hook raises:

- ``smtp_senders_store``: ``init_app`` fails; the app does not start half-configured.
- ``smtp_senders_authorize``: the request is denied (fail closed) and the error is logged.
- ``smtp_senders_login_url``: the visitor gets the 403 page (logged).
- ``smtp_senders_api_token_authenticated``: the API call needs the CSRF token (logged).
- ``smtp_senders_actor``: the operation fails before anything changes or is sent.
- ``smtp_senders_resolve``: the send fails at the resolve stage (logged).
- ``smtp_senders_destination_allowed``: the address is refused (fail closed, logged).
- ``smtp_senders_prepare_message``: the send fails before any connection is made.
- ``smtp_senders_audit``: a change of senders or keys is rolled back and
  ``flask_smtp_senders.AuditFailed`` is raised (fail closed); for a send,
  which cannot be unsent, the error is logged and the send's result stands.
"""

from __future__ import annotations

from collections.abc import Iterable
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from flask import Flask

    from .events import AuditEvent
    from .storage.base import Sender, SenderStore

NAME = "flask_smtp_senders"

hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)
"""Marks a plugin's method as the implementation of the hook of the same name
(``@hookimpl``, or ``@hookimpl(tryfirst=True)`` and pluggy's other options)."""


class HookSpecs:
    """The hooks a plugin may implement (each prefixed ``smtp_senders_``)."""

    @hookspec(firstresult=True)
    def smtp_senders_store(self, app: Flask, db: Any) -> SenderStore | None:
        """Return the store that keeps senders for ``app``.

        Stops at the first non-None result; the built-in returns the SQLAlchemy store when
        ``db`` is set.

        :param app: the Flask app the extension is being set up on.
        :param db: the Flask-SQLAlchemy object given to the extension, or None.
        """

    @hookspec(firstresult=True)
    def smtp_senders_authorize(self, action: str, sender_id: int | None) -> bool | None:
        """May the current user do ``action`` ("list", "read", "create", "update",
        "delete", "test") on the sender ``sender_id`` (None for actions on no particular
        sender)?

        Read the user from the host's own request context. Return True to allow, False to
        deny, None for no opinion. Stops at the first non-None result. No answer at all
        means deny: an app that implements nothing exposes nothing. "read" (open a
        sender's page, read-only without "update") is also allowed by "update".

        :param action: "list", "read", "create", "update", "delete" or "test".
        :param sender_id: the sender acted on, or None.
        """

    @hookspec(firstresult=True)
    def smtp_senders_login_url(self, next_url: str) -> str | None:
        """Where to send a visitor the authorisation hook refused, when they are not
        signed in: the host's login page, or None (signed in, or no opinion: 403).

        Asked only for a page (GET, not a static file, never the JSON API), and only when
        Flask-Login cannot answer (it is not set up on the app, or has no ``login_view``
        nor ``unauthorized_handler``). Stops at the first non-None result.

        :param next_url: the page asked for, a path on this site with its query, to send
            the visitor back to after login (e.g. ``url_for("login", next=next_url)``).
        """

    @hookspec(firstresult=True)
    def smtp_senders_api_token_authenticated(self) -> bool | None:
        """Was the current API call authenticated by a credential the browser does not send
        by itself (a bearer token, an API key header), rather than by the session cookie?

        Return True only when that credential is what signed the call in: the JSON API
        then skips its CSRF check for it. Return False when the session (or any other
        ambient credential: Basic, a client certificate, an IP allow-list) did, and the
        call needs the page's CSRF token. None: no opinion; with no True answer every
        change needs the CSRF token (a header alone proves nothing: a junk one can ride
        beside the session cookie). Stops at the first non-None result.
        """

    @hookspec(firstresult=True)
    def smtp_senders_resolve(self, server_name: str, port: int) -> list[str] | None:
        """Return the IP addresses to connect to for ``server_name``, in order.

        Stops at the first non-None result; the built-in asks the system resolver. The
        certificate is still verified against ``server_name``, whatever address is used.

        :param server_name: the sender's SMTP server, as saved.
        :param port: the sender's port.
        """

    @hookspec(firstresult=True)
    def smtp_senders_destination_allowed(self, server_name: str, port: int,
                                         address: str) -> bool | None:
        """May a sender connect to ``address`` (which ``server_name`` resolved to)?

        Asked for every address before any connection. Return True or False to decide,
        None to leave it to the settings (``SMTP_SENDERS_ALLOW_LOOPBACK``,
        ``SMTP_SENDERS_ALLOW_PRIVATE``, ``SMTP_SENDERS_DENIED_NETWORKS``). Stops at the
        first non-None result. Unspecified, link-local, multicast, broadcast and reserved
        addresses are refused whatever the hook says.

        :param server_name: the sender's SMTP server, as saved.
        :param port: the sender's port.
        :param address: one IP address ``server_name`` resolved to.
        """

    @hookspec(firstresult=True)
    def smtp_senders_actor(self) -> str | None:
        """Return a short, stable name for the current user, for the audit trail."""

    @hookspec
    def smtp_senders_prepare_message(
        self, message: EmailMessage, sender: Sender, purpose: str
    ) -> None:
        """Adjust ``message`` in place just before it is sent through ``sender``.

        ``purpose`` is "test" for the Send Test Email message and "notification" for
        messages sent through the sending API. Every implementation is called.

        :param message: the message about to be sent; change it in place.
        :param sender: the sender it goes through.
        :param purpose: "test" or "notification".
        """

    @hookspec
    def smtp_senders_audit(self, event: AuditEvent) -> None:
        """Record ``event`` (see ``flask_smtp_senders.events``); it holds no secret.

        Called for every created, updated and deleted sender, every test email, every
        message sent and every key rotation. Every implementation is called.

        :param event: what happened; its ``action`` says which kind of event it is.
        """


class _BuiltIns:
    """The defaults, registered first and run last."""

    @hookimpl(trylast=True)
    def smtp_senders_store(self, app: Flask, db: Any) -> SenderStore | None:
        if db is None:
            return None
        from .storage.sqlalchemy import SQLAlchemyStore

        return SQLAlchemyStore(db)

    @hookimpl(trylast=True)
    def smtp_senders_resolve(self, server_name: str, port: int) -> list[str]:
        from .smtp.transport import resolve

        return resolve(server_name, port)


def make_plugin_manager(plugins: Iterable[object] = (), *,
                        load_entry_points: bool = False) -> pluggy.PluginManager:
    """A plugin manager for one app: built-ins, then the entry points of group
    ``flask_smtp_senders`` when ``load_entry_points`` (the host's opt-in,
    ``SMTP_SENDERS_LOAD_ENTRY_POINTS``), then the host's ``plugins``."""
    manager = pluggy.PluginManager(NAME)
    manager.add_hookspecs(HookSpecs)
    manager.register(_BuiltIns(), name="flask_smtp_senders.builtins")
    if load_entry_points:
        manager.load_setuptools_entrypoints(NAME)
    for plugin in plugins:
        manager.register(plugin)
    return manager

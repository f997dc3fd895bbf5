"""The portal's session cookie, revocable on the server (Case G12).

Flask's session is a signed cookie: on its own, a copy taken before logout would still
sign its holder in afterwards. Here each user has a *session generation* kept in the
database (table ``portal_session_generations``); every cookie that names a user is stamped
with that user's generation when it is written, and a cookie whose stamp is not the
current generation opens as an empty session (and is deleted). Logout moves the user's
generation on, so every cookie issued before it, on any device, signs nobody in.

The cookie is HttpOnly and SameSite=Lax, and Secure when the request came over HTTPS (or
``SESSION_COOKIE_SECURE`` / ``EXAMPLE_HTTPS`` says the portal is served over HTTPS).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, has_request_context, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Column, Integer, MetaData, String, Table, select, update

#: The key the generation is kept under inside the signed cookie (never in ``session``).
GENERATION_KEY = "_generation"

metadata = MetaData()
generations = Table(
    "portal_session_generations", metadata,
    Column("user", String(100), primary_key=True),
    Column("generation", Integer, nullable=False),
)


def _engine() -> Any:
    from . import db  # the portal's SQLAlchemy object (defined after this module loads)

    return db.engine


def create_table(app: Flask) -> None:
    with app.app_context():
        metadata.create_all(_engine())


def generation(user: str) -> int:
    """The user's current session generation (0 until their first logout)."""
    with _engine().connect() as connection:
        value = connection.execute(
            select(generations.c.generation).where(generations.c.user == user)).scalar()
    return value or 0


def end_sessions(user: str) -> None:
    """Logout: every cookie issued to ``user`` so far stops working."""
    with _engine().begin() as connection:
        moved = connection.execute(update(generations).where(generations.c.user == user)
                                   .values(generation=generations.c.generation + 1))
        if moved.rowcount == 0:
            connection.execute(generations.insert().values(user=user, generation=1))


class RevocableSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, checked against the user's generation."""

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        serializer = super().get_signing_serializer(app)
        if serializer is None:
            return None
        dumps = serializer.dumps

        def stamped(obj: Any, salt: Any = None) -> Any:
            if isinstance(obj, dict) and obj.get("user") is not None:
                obj = {**obj, GENERATION_KEY: generation(obj["user"])}
            return dumps(obj, salt)

        serializer.dumps = stamped  # type: ignore[method-assign]
        return serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class()
        max_age = int(app.permanent_session_lifetime.total_seconds())
        try:
            data = serializer.loads(value, max_age=max_age)
        except BadSignature:
            return self.session_class()
        stamp = data.pop(GENERATION_KEY, None)
        user = data.get("user")
        if user is not None and stamp != generation(user):
            revoked = self.session_class()
            revoked.modified = True  # so the response deletes the cookie
            return revoked
        return self.session_class(data)

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (
            has_request_context() and request.is_secure)

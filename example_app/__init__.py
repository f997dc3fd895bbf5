"""An example admin portal that hosts flask-smtp-senders under Settings > Senders.

``create_app()`` builds the portal; ``python -m example_app`` (``make demo``) also starts
a local mail catcher so Send Test Email has somewhere real to go. Secrets the demo needs
(Flask's key, the Fernet key) are generated once into the instance folder, never the repo.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from flask import Flask, render_template
from flask_sqlalchemy import SQLAlchemy

from flask_smtp_senders import SMTPSenders

from . import auth, catcher

PORTAL_NAME = "Example Admin Portal"
SECRET_KEY_FILE = "secret.key"  # noqa: S105 - a file name, not a secret
ENCRYPTION_KEY_FILE = "encryption.key"
API_TOKEN_FILE = "api.token"  # noqa: S105 - a file name, not a secret

db = SQLAlchemy()


def default_instance_path() -> Path:
    """``instance/`` next to the package (the repository root when run from the tree)."""
    return Path(__file__).resolve().parent.parent / "instance"


def instance_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in ``path``, created (mode 0600) by ``make`` on first use."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="ascii").strip()
        if not value:
            raise RuntimeError(f"{path} is empty: delete it to generate a new one") from None
        return value
    value = make()
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(value + "\n")
    return value


def database_url(instance: Path) -> str:
    """``DATABASE_URL`` (PostgreSQL through psycopg 3) or a SQLite file in the instance."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        instance.mkdir(mode=0o700, parents=True, exist_ok=True)
        return f"sqlite:///{instance / 'portal.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _settings(instance: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Every setting, computed only when the test config does not already give it (so
    tests never write key files)."""
    ca_file = instance / catcher.CA_FILE_NAME
    defaults: dict[str, Callable[[], Any]] = {
        "SECRET_KEY": lambda: os.environ.get("SECRET_KEY") or instance_secret(
            instance / SECRET_KEY_FILE, lambda: secrets.token_hex(32)),
        "SQLALCHEMY_DATABASE_URI": lambda: database_url(instance),
        "SMTP_SENDERS_ENCRYPTION_KEYS": lambda: (
            os.environ.get("SMTP_SENDERS_ENCRYPTION_KEYS") or instance_secret(
                instance / ENCRYPTION_KEY_FILE, lambda: Fernet.generate_key().decode())),
        "SMTP_SENDERS_CA_FILE": lambda: (
            os.environ.get("SMTP_SENDERS_CA_FILE") or (str(ca_file) if ca_file.is_file()
                                                       else None)),
        "SMTP_SENDERS_BASE_TEMPLATE": lambda: "layout.html",
        # ``make demo`` works from a fresh checkout: start-up creates (or upgrades) the
        # sender table. A real portal leaves this off and runs ``flask smtp-senders
        # upgrade`` in its deploy step.
        "SMTP_SENDERS_CREATE_TABLES": lambda: True,
        # The demo's mail catcher listens on 127.0.0.1: a real portal leaves this off.
        "SMTP_SENDERS_ALLOW_LOOPBACK": lambda: True,
        # From-domain advice asks the demo's DNS server (the DNS key of create_app); a
        # real portal leaves it on with the system's resolvers.
        "SMTP_SENDERS_DOMAIN_ADVICE": lambda: False,
        # Scripts call the JSON API with "Authorization: Bearer <this token>".
        "EXAMPLE_API_TOKEN": lambda: os.environ.get("EXAMPLE_API_TOKEN") or instance_secret(
            instance / API_TOKEN_FILE, lambda: secrets.token_urlsafe(32)),
        "EXAMPLE_ADMIN_PASSWORD": lambda: (
            os.environ.get("EXAMPLE_ADMIN_PASSWORD") or auth.DEFAULT_PASSWORD),
        "PORTAL_NAME": lambda: PORTAL_NAME,
        # Login attempts per client address (``limits`` notation), Case G12.
        "EXAMPLE_LOGIN_RATE_LIMIT": lambda: "5 per minute",
        # The session cookie: never readable by scripts, not sent with cross-site
        # requests, and Secure when the portal is served over HTTPS (EXAMPLE_HTTPS=1; a
        # request that came over HTTPS gets a Secure cookie anyway, see sessions.py).
        "SESSION_COOKIE_HTTPONLY": lambda: True,
        "SESSION_COOKIE_SAMESITE": lambda: "Lax",
        "SESSION_COOKIE_SECURE": lambda: os.environ.get("EXAMPLE_HTTPS", "").lower() in (
            "1", "true", "yes", "on"),
    }
    settings = {key: make() for key, make in defaults.items() if key not in overrides}
    settings.update(overrides)
    return settings


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the portal. ``test_config`` overrides every setting; three keys are special:
    ``INSTANCE_PATH`` (where keys and the SQLite file live), ``CATCHER`` (a running
    :class:`~example_app.catcher.Catcher` or a :class:`~example_app.catcher.MessageStore`
    to show on ``/catcher``) and ``DNS`` (a running
    :class:`~example_app.dns_server.DNSServer` for the From-domain advice)."""
    overrides = dict(test_config or {})
    instance = Path(overrides.pop("INSTANCE_PATH", None) or default_instance_path()).resolve()
    attached_catcher = overrides.pop("CATCHER", None)
    attached_dns = overrides.pop("DNS", None)
    if attached_dns is not None:
        for key, value in attached_dns.settings().items():
            overrides.setdefault(key, value)

    app = Flask(__name__, instance_path=str(instance))
    app.config.update(_settings(instance, overrides))

    db.init_app(app)
    auth.init_app(app)
    catcher.init_app(app, attached_catcher)
    SMTPSenders(app, db=db, plugins=[auth.PortalAccess()])

    @app.get("/")
    def home() -> str:
        return render_template("home.html", catcher=catcher.running_catcher())

    return app

"""Where ``init_app`` keeps an app's state, and how the pages, the API, the CLI and the
Celery task reach it: one key in ``app.extensions``.

Apart from :mod:`flask_smtp_senders.extension` (which builds the state and registers the
pages, the API and the CLI) so that those import this and not the extension: imports
point down, never in a circle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

if TYPE_CHECKING:
    from .services.senders import SenderService

EXTENSION_KEY = "smtp_senders"


def get_service(app: Flask | None = None) -> SenderService:
    """The sender operations of ``app`` (default: the current app)."""
    app = app or current_app
    try:
        return app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError("SMTPSenders.init_app() was not called for this app") from None


def api_prefix(config: Any) -> str:
    """Where the JSON API is mounted: ``/api`` under the pages' prefix."""
    return config["SMTP_SENDERS_URL_PREFIX"].rstrip("/") + "/api"


def is_api_path(config: Any, path: str) -> bool:
    """Whether ``path`` is under the JSON API (a host may answer those calls in JSON)."""
    root = api_prefix(config)
    return path == root or path.startswith(root + "/")

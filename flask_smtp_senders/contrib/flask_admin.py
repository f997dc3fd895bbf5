"""Settings > Senders inside a Flask-Admin shell (flask-admin 2.x): one call.

``add_senders_to_admin(admin)`` adds a Senders entry to the admin's menu (under
``category``) and makes the Senders pages render inside Flask-Admin's master template,
with its menu (the entry shown active on the Senders pages), its theme and its scripts.

Why a helper and not only ``SMTP_SENDERS_BASE_TEMPLATE = "admin/master.html"``: Flask-Admin's
master template needs what only its own views put in the context (``admin_view``,
``admin_base_template``, ``h``, ``get_url``, ``theme``, ...): rendered by another
blueprint it fails (a 500). So the menu entry is a small :class:`SendersView` (a
Flask-Admin ``BaseView`` whose page sends the visitor to the Senders list) and, on every
page of the ``smtp_senders`` blueprint, a context processor supplies what the master
template needs, as that view's own ``render`` would; the base template becomes
``smtp_senders/flask_admin_layout.html`` (which extends ``admin/master.html``) unless the
host chose another one. Both are set on the app when Flask-Admin registers the view,
so ``Admin(app)`` and ``admin.init_app(app)`` later both work, before or after
``SMTPSenders``.

The pages keep their behaviour: the same routes, CSRF checks and ``can``; the menu entry
shows only to a user the ``smtp_senders_authorize`` hook lets ``list`` senders. The
default ``SMTP_SENDERS_CONTENT_SECURITY_POLICY`` already allows Flask-Admin's theme
(its scripts, styles and fonts are served by the app itself, from ``'self'``); see
docs/flask-admin.md.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, redirect, url_for
from flask.typing import ResponseReturnValue
from flask_admin import Admin, BaseView, babel, expose
from flask_admin import helpers as admin_helpers
from markupsafe import Markup

from ..settings import DEFAULTS
from ..state import get_service

#: The layout the Senders pages extend inside Flask-Admin (it extends admin/master.html).
LAYOUT = "smtp_senders/flask_admin_layout.html"
BASE_TEMPLATE = "SMTP_SENDERS_BASE_TEMPLATE"
#: The base templates the helper replaces with LAYOUT: the default, and Flask-Admin's master
#: template named directly (its blocks are not the ones our pages fill). Any other is the
#: host's own choice and is kept (it may extend LAYOUT).
REPLACED = (DEFAULTS[BASE_TEMPLATE], "admin/master.html")
#: The pages' blueprint (flask_smtp_senders.blueprint), by name: its context processors.
PAGES = "smtp_senders"


class SendersView(BaseView):
    """The Senders entry of Flask-Admin's menu: its link is the Senders list, and it is
    the ``admin_view`` the master template shows the Senders pages as (so the entry is
    active there). Its own URL (``/admin/senders/``) redirects to the list."""

    @expose("/")
    def index(self) -> ResponseReturnValue:
        return redirect(url_for(f"{PAGES}.index"))

    def get_url(self, endpoint: str, **kwargs: Any) -> str:
        """The menu's link goes straight to the Senders list, not through the redirect."""
        if endpoint in (f"{self.endpoint}.index", ".index"):
            return url_for(f"{PAGES}.index", **kwargs)
        return super().get_url(endpoint, **kwargs)

    def is_accessible(self) -> bool:
        """Shown to whom the ``smtp_senders_authorize`` hook allows ``list`` (asked once
        per request; the pages still check every route for themselves)."""
        asked: dict[int, bool] = g.setdefault("smtp_senders_admin_list", {})
        if id(self) not in asked:
            asked[id(self)] = get_service().authorize("list", None)
        return asked[id(self)]

    def create_blueprint(self, admin: Admin) -> Any:
        blueprint = super().create_blueprint(admin)
        blueprint.record_once(lambda state: self._install(state.app))
        return blueprint

    def _install(self, app: Flask) -> None:
        """On the app Flask-Admin registers this view with: the Senders pages' layout
        (unless the host set another) and their Flask-Admin context."""
        if app.config.get(BASE_TEMPLATE, DEFAULTS[BASE_TEMPLATE]) in REPLACED:
            app.config[BASE_TEMPLATE] = LAYOUT
        app.template_context_processors[PAGES].append(self.shell_context)

    def shell_context(self) -> dict[str, Any]:
        """What ``admin/master.html`` needs, as ``BaseView.render`` gives it."""
        admin = self.admin
        if admin is None:  # set by create_blueprint, before any request
            raise RuntimeError("SendersView was not added to a Flask-Admin Admin")
        nonce = admin.csp_nonce_generator
        return {
            "admin_view": self,
            "admin_base_template": admin.theme.base_template,
            "admin_csp_nonce_attribute": (Markup('nonce="{}"').format(nonce())
                                          if nonce else ""),
            "_gettext": babel.gettext,
            "_ngettext": babel.ngettext,
            "h": admin_helpers,
            "get_url": self.get_url,
            "theme": admin.theme,
            **self._template_args,
        }


def add_senders_to_admin(admin: Admin, name: str = "Senders",
                         category: str | None = "Settings", *,
                         endpoint: str = "smtp_senders_admin",
                         **view_options: Any) -> SendersView:
    """Show Settings > Senders inside ``admin`` (a Flask-Admin ``Admin``): a menu entry
    ``name`` under ``category`` (None: at the top level) and the Senders pages in its
    master template. Call it once per ``Admin``, before or after ``admin.init_app(app)``
    and ``SMTPSenders``. ``view_options`` go to :class:`SendersView` (``url``,
    ``menu_icon_type``, ``menu_icon_value``, ...). Returns the view."""
    view = SendersView(name=name, category=category, endpoint=endpoint, **view_options)
    admin.add_view(view)
    return view

"""Settings > Senders: thin views over the forms and the SenderService.

Authorisation is checked once, in ``before_request``, for every route of the blueprint
(so no new route can forget it): a refused visitor who is not signed in is sent to the
host's login (Flask-Login's ``login_view``, or the ``smtp_senders_login_url`` hook) when
they asked for a page, anyone else gets 403. CSRF is checked there too for every POST,
answering 400. The templates get ``can``, what the current user may do
(:class:`.web.guard.Permissions`), and show only the controls it allows.
Every answer gets its security headers in ``after_request`` (Case G6): the
Content-Security-Policy (``frame-ancestors 'self'``: Delete and Make default are one-click
forms, never to be shown in another site's frame), ``X-Frame-Options: SAMEORIGIN`` and
``Cache-Control: no-store``; headers the host already set are kept.

A change and a probe run as the API's do (:mod:`.web.actions`), and a failure says what
it says in the API (:mod:`.web.failures`); how it is told is the pages' own: beside the
form, kept as typed (the password aside), or flashed over a redirect, or the host's 404
and our 503 page.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from .domain import Provider, is_microsoft365_smtp
from .errors import SenderNotFound, StorageError
from .services.probe import ProbeResult
from .services.public import secret_expiry, sender_tag
from .state import get_service
from .storage.base import Sender
from .web.actions import change, probe
from .web.failures import Failure, failure_of, text
from .web.forms import (
    CheckConnectionForm,
    DefaultForm,
    DeleteForm,
    NewSenderForm,
    SettingsForm,
    TestEmailForm,
)
from .web.guard import authorized, csrf_refusal, login_redirect, template_context
from .web.headers import security_headers
from .web.provider_forms import form_for

bp = Blueprint("smtp_senders", __name__, template_folder="templates",
               static_folder="static/smtp_senders",
               static_url_path="/static")

ERROR, SUCCESS = "smtp_senders.error", "smtp_senders.success"


@bp.before_request
def authorize_and_check_csrf() -> ResponseReturnValue | None:
    if not authorized():
        if request.method in ("GET", "HEAD") and request.endpoint != "smtp_senders.static":
            to_login = login_redirect()  # None: signed in, or the host has no login page
            if to_login is not None:
                return to_login
        abort(403)
    if request.method == "POST":
        refusal = csrf_refusal(request.form.get("csrf_token"))
        if refusal is not None:
            abort(400, description=f"The form expired or was not sent by this site ({refusal}).")
    return None


bp.context_processor(template_context)  # ``can``: what the templates may offer


@bp.after_request
def add_security_headers(response: Response) -> Response:
    """Our pages' headers, unless the host set its own (see docs/security.md). The static
    files may be cached; the pages, which show sender settings, never."""
    is_static = (request.endpoint or "").endswith(".static")
    return security_headers(response, get_service().settings.content_security_policy,
                            no_store=not is_static)


@bp.errorhandler(StorageError)
def storage_unavailable(error: StorageError) -> ResponseReturnValue:
    return _unavailable(failure_of(error))


def _unavailable(failure: Failure) -> ResponseReturnValue:
    """The sender database cannot be reached (a missing table says which command creates
    it): 503, as JSON for the test modal."""
    if _wants_json():
        return jsonify(ok=False, message=failure.message), failure.status
    return render_template("smtp_senders/unavailable.html", message=failure.message), \
        failure.status


def _sender_or_404(sender_id: int) -> Sender:
    try:
        return get_service().get_sender(sender_id)
    except SenderNotFound:
        abort(404)


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


@bp.get("/")
def index() -> ResponseReturnValue:
    service = get_service()
    senders = service.list_senders()
    readable = {sender.id: service.password_readable(sender) for sender in senders}
    expiring = {sender.id: secret_expiry(sender.settings) for sender in senders}
    return render_template("smtp_senders/index.html", senders=senders, readable=readable,
                           expiring=expiring, default_form=DefaultForm())


@bp.route("/new", methods=["GET", "POST"])
def new() -> ResponseReturnValue:
    form = NewSenderForm()
    if form.validate_on_submit():
        return redirect(url_for(".create", provider=form.provider_type.data))
    return render_template("smtp_senders/new.html", form=form)


# -- changes: each told by a flash; a failed one keeps the form as typed ------------------

@bp.route("/new/email/custom", methods=["GET", "POST"],
          defaults={"provider": Provider.CUSTOM.value})
@bp.route("/new/email/<any(microsoft365, google, oauth2):provider>", methods=["GET", "POST"])
def create(provider: str) -> ResponseReturnValue:
    """The form of the Provider Type chosen at the + step."""
    form = form_for(Provider(provider))
    if form.validate_on_submit() and form.settings is not None:
        settings, secret = form.settings, form.secret()
        try:
            sender = change(lambda: get_service().create_sender(settings, secret))
        except Failure as failure:
            _not_done(failure, form)
            return (render_template("smtp_senders/form.html", form=form, sender=None),
                    failure.page_status, failure.headers)
        _saved(settings.from_address)
        return redirect(url_for(".edit", sender_id=sender.id))
    return render_template("smtp_senders/form.html", form=form, sender=None), _status(form)


@bp.route("/<int:sender_id>", methods=["GET", "POST"])
def edit(sender_id: int) -> ResponseReturnValue:
    sender = _sender_or_404(sender_id)
    form = form_for(sender.settings.provider_type)  # a sender keeps its Provider Type
    if request.method == "GET":
        form.fill(sender)
    elif form.validate_on_submit() and form.settings is not None:
        settings, version = form.settings, form.expected_version(sender) or -1
        secret = form.secret()
        try:
            change(lambda: get_service().update_sender(sender_id, version, settings, secret))
        except Failure as failure:
            _not_done(failure, form)
            if failure.kind == "conflict":
                sender = _sender_or_404(sender_id)  # the next save is checked against this
                form.version.data = sender_tag(sender)
            return (_edit_page(sender, form, TestEmailForm(formdata=None)),
                    failure.page_status, failure.headers)
        _saved(settings.from_address)
        return redirect(url_for(".edit", sender_id=sender_id))
    return _edit_page(sender, form, TestEmailForm(formdata=None)), _status(form)


@bp.post("/<int:sender_id>/default")
def make_default(sender_id: int) -> ResponseReturnValue:
    form = DefaultForm()
    if form.validate_on_submit():
        try:
            change(lambda: get_service().set_default_sender(sender_id))
        except Failure as failure:
            if failure.kind == "unavailable":  # no form to keep: the 503 page, as a read's
                return _unavailable(failure)
            _not_done(failure)
        else:
            flash(text("default_changed"), SUCCESS)
    return redirect(url_for(".index"))


@bp.route("/<int:sender_id>/delete", methods=["GET", "POST"])
def delete(sender_id: int) -> ResponseReturnValue:
    sender = _sender_or_404(sender_id)
    form = DeleteForm()
    if form.validate_on_submit():
        version = form.expected_version(sender)  # OTHER_SENDER: a conflict
        if version is None:  # the page always sends one: this form was tampered with
            abort(400, description="The delete form is incomplete; reload the page.")
        try:
            change(lambda: get_service().delete_sender(sender_id, version))
        except Failure as failure:
            _not_done(failure)
            return redirect(url_for(".edit", sender_id=sender_id))
        flash(text("deleted"), SUCCESS)
        return redirect(url_for(".index"))
    form.version.data = sender_tag(sender)
    return render_template("smtp_senders/delete.html", form=form, sender=sender)


def _not_done(failure: Failure, form: SettingsForm | None = None) -> None:
    """A change or a probe not made: the host's 404 page for a sender deleted meanwhile;
    field errors beside their fields; anything else flashed (Case G5: a refusal too)."""
    if failure.kind == "not-found":
        abort(404)
    if form is not None and failure.errors:
        form.add_errors(failure.errors)
    else:
        flash(failure.notice, ERROR)


def _saved(from_address: str) -> None:
    """Saved; and what the From domain publishes (SPF, DMARC), as advice."""
    flash(text("saved"), SUCCESS)
    for line in get_service().domain_advice(from_address):
        flash(line, "smtp_senders.advice")


def _status(form: Any) -> int:
    return 422 if request.method == "POST" and form.errors else 200


def _edit_page(sender: Sender, form: SettingsForm, test_form: TestEmailForm,
               test_open: bool = False, result: ProbeResult | None = None,
               domain_advice: list[str] | None = None) -> str:
    return render_template(
        "smtp_senders/form.html", form=form, sender=sender, test_form=test_form,
        test_open=test_open or request.args.get("test") == "1",
        password_problem=_password_problem(sender), notice=_server_notice(sender),
        result=result, domain_advice=domain_advice or [],
    )


def _server_notice(sender: Sender) -> str | None:
    """What the saved Server Name's provider is about to change, if we know of it: a
    Custom Server at Microsoft 365 loses password sign-in (its own provider type signs
    in with a token)."""
    if (sender.settings.provider_type is Provider.CUSTOM
            and is_microsoft365_smtp(sender.settings.server_name)):
        return text("office365_basic_auth_notice")
    return None


def _password_problem(sender: Sender) -> str | None:
    problem = get_service().password_problem(sender)
    return text(problem) if problem else None


# -- Send Test Email and Check connection --------------------------------------------------

@bp.post("/<int:sender_id>/test")
def test_email(sender_id: int) -> ResponseReturnValue:
    return _probe(sender_id, "test", TestEmailForm())


@bp.post("/<int:sender_id>/check")
def check_connection(sender_id: int) -> ResponseReturnValue:
    return _probe(sender_id, "check", CheckConnectionForm())


def _probe(sender_id: int, kind: Literal["test", "check"],
           test_form: TestEmailForm) -> ResponseReturnValue:
    """The form's recipient, then the probe (:func:`.web.actions.probe`), answered with
    the result, its staged diagnosis and the From-domain advice: JSON for the modal, the
    edit page with the dialog open without JavaScript."""
    sender = _sender_or_404(sender_id)
    if not test_form.validate_on_submit():
        if _wants_json():
            return jsonify(ok=False, message=" ".join(test_form.recipient.errors),
                           field="recipient"), 422
        return _test_page(sender, test_form), 422
    try:
        probed = probe(sender, kind, test_form.recipient.data)
    except Failure as failure:
        if _wants_json() and failure.kind != "not-found":
            return jsonify(ok=False, message=failure.message), failure.status, failure.headers
        _not_done(failure)
        return _test_page(sender, test_form), failure.page_status, failure.headers
    if _wants_json():
        return jsonify(probed.as_dict(stage=False))
    return _test_page(_sender_or_404(sender_id), test_form,  # with the test just recorded
                      result=probed.result, domain_advice=probed.domain_advice)


def _test_page(sender: Sender, test_form: TestEmailForm, **result: Any) -> str:
    form = form_for(sender.settings.provider_type, formdata=None)
    form.fill(sender)
    return _edit_page(sender, form, test_form, test_open=True, **result)

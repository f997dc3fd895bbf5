"""Settings > Senders: thin views over the forms and the SenderService.

Authorisation is checked once, in ``before_request``, for every route of the blueprint
(so no new route can forget it); CSRF is checked there too for every POST, answering 400.
Every answer gets its security headers in ``after_request`` (Case G6): the
Content-Security-Policy (``frame-ancestors 'self'``: Delete and Make default are one-click
forms, never to be shown in another site's frame), ``X-Frame-Options: SAMEORIGIN`` and
``Cache-Control: no-store``; headers the host already set are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from .errors import AuditFailed, ConcurrentUpdate, SenderNotFound, StorageError, TableMissing
from .services.public import sender_tag
from .services.senders import ProbeResult
from .settings import message
from .state import get_service
from .storage.sqlalchemy import Sender
from .web.forms import (
    CheckConnectionForm,
    DefaultForm,
    DeleteForm,
    NewSenderForm,
    SenderForm,
    TestEmailForm,
)
from .web.guard import authorized, csrf_refusal
from .web.headers import security_headers
from .web.ratelimit import Refusal, test_email_refusal, write_refusal

bp = Blueprint("smtp_senders", __name__, template_folder="templates",
               static_folder="static/smtp_senders",
               static_url_path="/static")

@bp.before_request
def authorize_and_check_csrf() -> None:
    if not authorized():
        abort(403)
    if request.method == "POST":
        refusal = csrf_refusal(request.form.get("csrf_token"))
        if refusal is not None:
            abort(400, description=f"The form expired or was not sent by this site ({refusal}).")


@bp.after_request
def add_security_headers(response: Response) -> Response:
    """Our pages' headers, unless the host set its own (see docs/security.md). The static
    files may be cached; the pages, which show sender settings, never."""
    is_static = (request.endpoint or "").endswith(".static")
    return security_headers(response, current_app.config["SMTP_SENDERS_CONTENT_SECURITY_POLICY"],
                            no_store=not is_static)


@bp.errorhandler(StorageError)
def storage_unavailable(error: StorageError) -> ResponseReturnValue:
    # A missing table says which command creates it (SMTP_SENDERS_MSG_TABLE_MISSING).
    text = str(error) if isinstance(error, TableMissing) else _msg("storage_unavailable")
    if _wants_json():
        return jsonify(ok=False, message=text), 503
    return render_template("smtp_senders/unavailable.html", message=text), 503


def _msg(name: str, **values: str) -> str:
    return message(current_app.config, name, **values)


def _flash_domain_advice(from_address: str) -> None:
    """What the From domain publishes (SPF, DMARC): advice shown after a save."""
    for line in get_service().domain_advice(from_address):
        flash(line, "smtp_senders.advice")


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
    return render_template("smtp_senders/index.html", senders=senders, readable=readable,
                           default_form=DefaultForm())


@bp.route("/new", methods=["GET", "POST"])
def new() -> ResponseReturnValue:
    form = NewSenderForm()
    if form.validate_on_submit():
        return redirect(url_for(".create"))
    return render_template("smtp_senders/new.html", form=form)


@bp.route("/new/email/custom", methods=["GET", "POST"])
def create() -> ResponseReturnValue:
    form = SenderForm()
    if form.validate_on_submit() and form.settings is not None:
        refusal = write_refusal()
        if refusal is not None:
            return _refused(refusal, "smtp_senders/form.html", form=form, sender=None)
        try:
            sender = get_service().create_sender(form.settings, form.password.data)
        except TableMissing as exc:
            flash(str(exc), "smtp_senders.error")
        except (AuditFailed, StorageError):
            flash(_msg("save_failed"), "smtp_senders.error")
        else:
            flash(_msg("saved"), "smtp_senders.success")
            _flash_domain_advice(form.settings.from_address)
            return redirect(url_for(".edit", sender_id=sender.id))
    return render_template("smtp_senders/form.html", form=form, sender=None), _status(form)


@bp.route("/<int:sender_id>", methods=["GET", "POST"])
def edit(sender_id: int) -> ResponseReturnValue:
    sender = _sender_or_404(sender_id)
    form = SenderForm()
    if request.method == "GET":
        form.fill(sender)
    elif form.validate_on_submit() and form.settings is not None:
        refusal = write_refusal()
        if refusal is not None:  # what was typed stays in the form (the password aside)
            flash(refusal.message, "smtp_senders.error")
            return (_edit_page(sender, form, TestEmailForm(formdata=None)), refusal.status,
                    refusal.headers)
        try:
            get_service().update_sender(sender_id, form.expected_version(sender) or -1,
                                        form.settings, form.password.data)
        except SenderNotFound:
            abort(404)
        except ConcurrentUpdate:
            flash(_msg("conflict"), "smtp_senders.error")
            sender = _sender_or_404(sender_id)  # the next save is checked against this one
            form.version.data = sender_tag(sender)
        except (AuditFailed, StorageError):
            flash(_msg("save_failed"), "smtp_senders.error")
        else:
            flash(_msg("saved"), "smtp_senders.success")
            _flash_domain_advice(form.settings.from_address)
            return redirect(url_for(".edit", sender_id=sender_id))
    return _edit_page(sender, form, TestEmailForm(formdata=None)), _status(form)


def _edit_page(sender: Sender, form: SenderForm, test_form: TestEmailForm,
               test_open: bool = False, result: ProbeResult | None = None,
               domain_advice: list[str] | None = None) -> str:
    return render_template(
        "smtp_senders/form.html", form=form, sender=sender, test_form=test_form,
        test_open=test_open or request.args.get("test") == "1",
        password_problem=_password_problem(sender),
        result=result, domain_advice=domain_advice or [],
    )


def _password_problem(sender: Sender) -> str | None:
    problem = get_service().password_problem(sender)
    return _msg(problem) if problem else None


def _refused(refusal: Refusal, template: str, **context: Any) -> ResponseReturnValue:
    """Case G5: the change is not saved now; the page says why and keeps what was typed."""
    flash(refusal.message, "smtp_senders.error")
    return render_template(template, **context), refusal.status, refusal.headers


def _status(form: Any) -> int:
    return 422 if request.method == "POST" and form.errors else 200


@bp.post("/<int:sender_id>/test")
def test_email(sender_id: int) -> ResponseReturnValue:
    return _exchange(sender_id, TestEmailForm(), lambda recipient: (
        get_service().send_test_email(sender_id, recipient)))


@bp.post("/<int:sender_id>/check")
def check_connection(sender_id: int) -> ResponseReturnValue:
    return _exchange(sender_id, CheckConnectionForm(), lambda recipient: (
        get_service().check_connection(sender_id, recipient)))


def _exchange(sender_id: int, test_form: TestEmailForm,
              run: Callable[[str | None], ProbeResult]) -> ResponseReturnValue:
    """Send Test Email or Check connection: validate, rate-limit, run, then answer with
    the result, its staged diagnosis and the From-domain advice (JSON for the modal, the
    edit page with the dialog open without JavaScript)."""
    sender = _sender_or_404(sender_id)
    if not test_form.validate_on_submit():
        errors = test_form.recipient.errors
        if _wants_json():
            return jsonify(ok=False, message=" ".join(errors), field="recipient"), 422
        return _test_page(sender, test_form), 422
    # Case C7: a rate limit per administrator and per sender, counted only for valid,
    # authorised requests; without its counters (Redis down) nothing is sent (fail closed).
    refusal = test_email_refusal(sender_id)
    if refusal is not None:
        if _wants_json():
            return jsonify(ok=False, message=refusal.message), refusal.status, refusal.headers
        flash(refusal.message, "smtp_senders.error")
        return _test_page(sender, test_form), refusal.status, refusal.headers
    result = run(test_form.recipient.data)
    domain_advice = get_service().domain_advice(sender.settings.from_address)
    if _wants_json():
        return jsonify(ok=result.ok, message=result.message,
                       diagnosis=result.diagnosis.as_dict(), domain_advice=domain_advice)
    sender = _sender_or_404(sender_id)  # with the test just recorded
    return _test_page(sender, test_form, result=result, domain_advice=domain_advice)


def _test_page(sender: Sender, test_form: TestEmailForm, **result: Any) -> str:
    form = SenderForm(formdata=None)
    form.fill(sender)
    return _edit_page(sender, form, test_form, test_open=True, **result)


@bp.post("/<int:sender_id>/default")
def make_default(sender_id: int) -> ResponseReturnValue:
    form = DefaultForm()
    if form.validate_on_submit():
        refusal = write_refusal()
        if refusal is not None:
            flash(refusal.message, "smtp_senders.error")
            return redirect(url_for(".index"))
        try:
            get_service().set_default_sender(sender_id)
        except SenderNotFound:
            abort(404)
        except AuditFailed:
            flash(_msg("save_failed"), "smtp_senders.error")
        else:
            flash(_msg("default_changed"), "smtp_senders.success")
    return redirect(url_for(".index"))


@bp.route("/<int:sender_id>/delete", methods=["GET", "POST"])
def delete(sender_id: int) -> ResponseReturnValue:
    sender = _sender_or_404(sender_id)
    form = DeleteForm()
    if form.validate_on_submit():
        version = form.expected_version(sender)  # OTHER_SENDER: a conflict
        if version is None:  # the page always sends one: this form was tampered with
            abort(400, description="The delete form is incomplete; reload the page.")
        refusal = write_refusal()
        if refusal is not None:
            flash(refusal.message, "smtp_senders.error")
            return redirect(url_for(".edit", sender_id=sender_id))
        try:
            get_service().delete_sender(sender_id, version)
        except SenderNotFound:
            abort(404)
        except (ConcurrentUpdate, AuditFailed, StorageError) as exc:
            reason = "conflict" if isinstance(exc, ConcurrentUpdate) else "save_failed"
            flash(_msg(reason), "smtp_senders.error")
            return redirect(url_for(".edit", sender_id=sender_id))
        flash(_msg("deleted"), "smtp_senders.success")
        return redirect(url_for(".index"))
    form.version.data = sender_tag(sender)
    return render_template("smtp_senders/delete.html", form=form, sender=sender)

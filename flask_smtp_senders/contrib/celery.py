"""Distributed dispatch through Celery (the optional ``flask-smtp-senders[celery]`` extra).

``register_tasks(celery, app)`` defines the task ``flask_smtp_senders.send_message``;
``send_later(message, sender)`` queues one message for it. The task payload is the sender's
id and the message as RFC 5322 text, serialised as JSON: never a password, a Fernet token
or any other credential. The worker reads the sender and decrypts its password itself.

Failures: a temporary (4xx) refusal is retried by Celery a bounded number of times with
backoff; a message whose fate is unknown is never sent again; every other failure ends
the task with :class:`SendFailed`, whose text is the fixed user message of the catalogue,
never a server reply.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any, cast

from celery import Celery, Task
from celery.result import AsyncResult
from email_validator import EmailNotValidError
from flask import Flask, current_app

from ..errors import (
    ConfigurationError,
    DeliveryError,
    InvalidSenderData,
    PasswordUnreadable,
    SenderNotFound,
    SMTPSendersError,
    StorageError,
    TableMissing,
)
from ..settings import BEHAVIOUR, Settings
from ..state import get_service
from ..storage.base import Sender
from ..texts import message as user_message

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RETRY_DELAY",
    "TASK_NAME",
    "SendFailed",
    "dump_message",
    "load_message",
    "register_tasks",
    "send_later",
]

TASK_NAME = "flask_smtp_senders.send_message"
#: The default of SMTP_SENDERS_CELERY_MAX_RETRIES.
DEFAULT_MAX_RETRIES: int = BEHAVIOUR["SMTP_SENDERS_CELERY_MAX_RETRIES"]
#: The default of SMTP_SENDERS_CELERY_RETRY_DELAY (seconds).
DEFAULT_RETRY_DELAY: float = BEHAVIOUR["SMTP_SENDERS_CELERY_RETRY_DELAY"]


class SendFailed(SMTPSendersError):
    """A queued message was not sent; the text is a fixed user message, nothing else.

    One plain string argument, so Celery can rebuild it from a JSON result.
    """


def dump_message(message: EmailMessage) -> str:
    """The message as RFC 5322 text (7-bit headers, CRLF line ends): JSON carries it."""
    return message.as_string(policy=email.policy.SMTP)


def load_message(text: str) -> EmailMessage:
    """The inverse of :func:`dump_message`."""
    return cast(EmailMessage, email.message_from_string(text, policy=email.policy.default))


def register_tasks(celery: Celery, app: Flask) -> Task:
    """Define ``flask_smtp_senders.send_message`` on ``celery``, sending through ``app``.

    Call it once per Celery app, in the web processes and in the workers alike.
    """
    if TASK_NAME in celery.tasks:
        raise ConfigurationError(f"the Celery app already has a task named {TASK_NAME}")
    get_service(app)  # fails now if SMTPSenders.init_app() was not called

    def send_message(task: Task, sender_id: int | None, message: str) -> dict[str, Any]:
        """Send one queued message through a saved sender (None: the default one)."""
        return _send(task, app, sender_id, message)

    # shared=False: a shared task would be added to every Celery app made later, each
    # bound to this Flask app. Acks stay early (at most once): a worker that dies during
    # a send must not send the message again.
    registered = celery.task(name=TASK_NAME, bind=True, shared=False, lazy=False,
                             serializer="json", acks_late=False)(send_message)
    get_service(app).extras[TASK_NAME] = registered
    return registered


def send_later(message: EmailMessage, sender: int | Sender | None = None, *,
               app: Flask | None = None, **options: Any) -> AsyncResult:
    """Queue ``message`` for the worker; ``options`` go to ``apply_async`` (queue,
    countdown...). The message itself is left as it is."""
    flask_app = app or cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        task: Task = get_service(flask_app).extras[TASK_NAME]
    except KeyError:
        raise RuntimeError("register_tasks() was not called for this app") from None
    sender_id = sender.id if isinstance(sender, Sender) else sender
    options["serializer"] = "json"
    return task.apply_async((sender_id, dump_message(message)), **options)


def _send(task: Task, app: Flask, sender_id: int | None, text: str) -> dict[str, Any]:
    if (sender_id is not None and (isinstance(sender_id, bool) or not isinstance(sender_id, int))
            or not isinstance(text, str)):
        raise SendFailed("The queued message is malformed: expected a sender id and a text.")
    settings = get_service(app).settings
    with app.app_context():
        try:
            result = get_service(app).mailer.send(load_message(text), sender_id)
        except DeliveryError as failure:
            error = SendFailed(failure.user_message)
            if failure.temporary and not failure.delivery_unknown:
                raise _retry(task, settings, error) from None
            raise error from None
        except StorageError as failed:  # nothing was sent: the database may be back later
            raise _retry(task, settings, SendFailed(
                str(failed) if isinstance(failed, TableMissing)  # names the command to run
                else user_message(settings.texts, "storage_unavailable"))) from None
        except PasswordUnreadable as unusable:  # CredentialNotBound carries its own text
            raise SendFailed(getattr(unusable, "user_message", None)
                             or user_message(settings.texts, "password_reentry")) from None
        except (InvalidSenderData, EmailNotValidError) as invalid:  # the message's fault
            raise SendFailed(str(invalid)) from None
        except SenderNotFound:
            raise SenderNotFound("no default sender is configured" if sender_id is None
                                 else f"sender {sender_id} does not exist") from None
    return {
        "message_id": result.message_id,
        "accepted": list(result.accepted),
        # Codes only: the replies are server text and stay in the worker's log.
        "refused": {address: code for address, (code, _) in result.refused.items()},
    }


def _retry(task: Task, settings: Settings, error: SendFailed) -> BaseException:
    """Schedule the next try and return Celery's Retry to raise; ``error`` itself once the
    retries are spent. Each try waits twice as long as the one before."""
    countdown = settings.celery_retry_delay * 2 ** task.request.retries
    try:
        return task.retry(exc=error, countdown=countdown,
                          max_retries=settings.celery_max_retries, throw=False)
    except SendFailed as spent:  # Celery raises ``exc`` when no retry is left
        return spent

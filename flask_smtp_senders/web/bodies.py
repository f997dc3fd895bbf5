"""The JSON API's request bodies: a JSON object of known fields of the right JSON type,
every field checked at once (as the form reports every field), answered with 415, 400 or
422 problems. The values themselves are checked by the same rules as the form's."""

from __future__ import annotations

from typing import Any

from flask import request

from ..domain import Provider
from ..errors import InvalidSenderData
from ..provider_fields import OAUTH_FIELDS, provider_of
from ..services.providers import checked_secret
from ..state import get_service
from ..storage.base import Sender
from ..validation import (
    MSG_REQUIRED,
    SETTING_NAMES,
    SenderSettings,
    validate_recipient,
    validate_settings,
)
from . import problems

#: The fields a sender body may hold (``password`` is write-only: the password, client
#: secret or service account key, by ``provider``); all strings but port.
SENDER_FIELDS = frozenset(SETTING_NAMES) | {"password"}
#: The one field of a test or check body.
RECIPIENT_FIELDS = frozenset({"recipient"})


def body(required: tuple[str, ...] = (), allowed: frozenset[str] = SENDER_FIELDS
         ) -> dict[str, Any]:
    """The JSON object sent, with known fields of the right JSON type only."""
    value = json_object()
    errors = _field_errors(value, required, allowed)
    if errors:
        raise problems.invalid(errors)
    return value


def json_object() -> dict[str, Any]:
    """The body as a JSON object: 415, 400 or 422 when it is none."""
    if request.mimetype != "application/json":
        raise problems.unsupported_media_type()
    value = request.get_json(silent=True)
    if value is None:
        raise problems.malformed()
    if not isinstance(value, dict):
        raise problems.not_an_object()
    return value


def _field_errors(value: dict[str, Any], required: tuple[str, ...],
                  allowed: frozenset[str]) -> dict[str, str]:
    """The fields of the wrong shape: unknown, of the wrong JSON type, or missing (the
    values themselves are checked by the service, as the form's are)."""
    errors = {name: "Unknown field." for name in value if name not in allowed}
    for name, field in value.items():
        if name == "port":
            if isinstance(field, bool) or not isinstance(field, int | type(None)):
                errors[name] = "Must be an integer."
        elif name in allowed and not isinstance(field, str):
            errors[name] = "Must be a string."
    for name in required:
        if name not in errors and not value.get(name):
            errors[name] = MSG_REQUIRED
    return errors


def sender_settings(required: tuple[str, ...], current: Sender | None = None
                    ) -> tuple[SenderSettings, str]:
    """The settings (the current ones with the body's changes) and secret of a create
    or update body, every field checked at once: a wrong JSON type and a bad value are
    reported together, as the form reports every field."""
    value = json_object()
    errors = _field_errors(value, required, SENDER_FIELDS)
    values = {name: field for name, field in value.items() if name not in errors}
    password = values.pop("password", "")
    merged = _current_settings(current, values)
    merged |= {name: field for name, field in values.items() if field is not None}
    try:
        settings = validate_settings(**merged, rules=get_service().address_rules)
    except InvalidSenderData as exc:
        errors = exc.errors | errors  # a wrong type says more than the value check
    if "password" not in errors:
        try:
            checked_secret(_provider(merged.get("provider")), password)
        except InvalidSenderData as exc:
            errors |= exc.errors
    if errors:
        raise problems.invalid(errors)
    return settings, password


def _current_settings(current: Sender | None, values: dict[str, Any]) -> dict[str, Any]:
    """What a body's changes apply to: the sender's settings (none for a new one). A body
    that changes the Provider Type starts the sign-in fields afresh: another provider's
    tenant or token URL means nothing to the new one, so they are not carried over."""
    if current is None:
        return {name: "" for name in SETTING_NAMES if name != "port"}
    merged = {name: getattr(current.settings, name) for name in SETTING_NAMES}
    if values.get("provider") not in (None, current.settings.provider):
        merged |= dict.fromkeys(OAUTH_FIELDS, "")
    return merged


def _provider(value: object) -> Provider:
    """The body's Provider Type, for the rules of its secret (a bad one is reported by
    the settings' check; its secret is then checked as a password)."""
    try:
        return provider_of(value)
    except ValueError:
        return Provider.CUSTOM


def recipient(required: bool) -> str | None:
    """A test's or check's recipient, checked before the rate limit counts the request
    (as on the page); None for a check without one. A test needs one: blanks are none,
    and nothing is sent or counted."""
    value = body(required=("recipient",) if required else (),
                 allowed=RECIPIENT_FIELDS).get("recipient")
    if value is None or not value.strip(" \t"):
        if required:
            raise problems.invalid({"recipient": MSG_REQUIRED})
        return None
    try:
        return validate_recipient(value, get_service().address_rules)
    except InvalidSenderData as exc:
        raise problems.invalid(exc.errors) from None

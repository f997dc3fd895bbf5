"""The advice catalogue of token requests and the TokenError that carries its key.

Why: the key an error names must have a sentence (``SMTP_SENDERS_ADVICE_<key>``), the
sentence must be safe to format, and the codes an error keeps must be ones we can vouch
for; the mapping itself is exercised on the wire in test_grants.py.
"""

from __future__ import annotations

import ssl

import pytest

from flask_smtp_senders.oauth import ADVICE_KEYS, STAGES, TokenError
from flask_smtp_senders.oauth import advice as advice_module
from flask_smtp_senders.settings import DEFAULTS


def test_every_advice_key_has_a_sentence_without_placeholders_and_every_sentence_a_key():
    texts = {key.removeprefix("SMTP_SENDERS_ADVICE_") for key in DEFAULTS
             if key.startswith("SMTP_SENDERS_ADVICE_TOKEN_")}
    assert texts == ADVICE_KEYS
    for key in ADVICE_KEYS:
        text = DEFAULTS[f"SMTP_SENDERS_ADVICE_{key}"]
        assert "{" not in text and "}" not in text and text.endswith(".")


def test_the_admin_steps_name_the_places_an_admin_looks():
    def text(key: str) -> str:
        return DEFAULTS[f"SMTP_SENDERS_ADVICE_{key}"]

    assert "Value, not its Secret ID" in text("TOKEN_BAD_SECRET")
    assert "Microsoft Entra admin center" in text("TOKEN_SECRET_EXPIRED")
    assert "SMTP.SendAsApp" in text("TOKEN_CONSENT_MISSING")
    assert "Google Admin console" in text("TOKEN_DELEGATION_MISSING")
    assert "https://mail.google.com/" in text("TOKEN_DELEGATION_MISSING")
    assert "Client ID" in text("TOKEN_DELEGATION_MISSING")
    assert "https://outlook.office365.com/.default" in text("TOKEN_BAD_SCOPE")


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_its_advice(stage):
    assert advice_module.STAGE_ADVICE[stage] in ADVICE_KEYS


@pytest.mark.parametrize("codes, description, found", [
    ([7000215], None, 7000215), ([7000215, 50000], "AADSTS90002: x", 7000215),
    (None, "AADSTS700016: Application with identifier", 700016),
    ([], "  AADSTS65001: The user or administrator", 65001),
    (["7000215"], None, None), ([True], None, None), ([-1], None, None),
    (None, "Error AADSTS7000215 later in the text", None), (None, None, None),
    ("7000215", "AADSTSabc", None),
])
def test_microsofts_code_comes_from_error_codes_or_the_front_of_the_description(
        codes, description, found):
    assert advice_module.microsoft_code(codes, description) == found


@pytest.mark.parametrize("code, key", sorted(advice_module.MICROSOFT_CODES.items()))
def test_each_listed_entra_code_wins_over_its_error(code, key):
    assert advice_module.for_refusal("invalid_request", None, code) == key
    assert key in ADVICE_KEYS


def test_tls_failures_are_told_apart_by_their_verify_code():
    def verify_error(code: int) -> ssl.SSLCertVerificationError:
        error = ssl.SSLCertVerificationError("certificate verify failed")
        error.verify_code = code
        return error

    assert advice_module.for_tls(verify_error(62)) == "TOKEN_TLS_WRONG_NAME"
    assert advice_module.for_tls(verify_error(20)) == "TOKEN_TLS_UNTRUSTED"
    assert advice_module.for_tls(verify_error(10)) == "TOKEN_TLS_FAILED"  # expired
    assert advice_module.for_tls(ssl.SSLError("wrong version")) == "TOKEN_TLS_FAILED"


def test_a_token_error_keeps_only_codes_it_can_vouch_for():
    error = TokenError("refused", status=400, error="bad code\r\nX", provider_code="x" * 65,
                       advice="TOKEN_REFUSED")

    assert (error.error, error.provider_code) == (None, None)
    assert str(error) == "the token request failed at refused (HTTP 400)"


def test_a_token_error_has_a_known_stage():
    with pytest.raises(ValueError):
        TokenError("somewhere")

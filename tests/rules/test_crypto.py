"""Secrets in memory, Fernet tokens at rest, and the key setting's parser."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import pickle
from datetime import datetime, timezone

import pytest
from cryptography.fernet import Fernet, InvalidToken

from flask_smtp_senders import ConfigurationError, PasswordUnreadable, Sender, SenderSettings
from flask_smtp_senders.crypto import PasswordCipher, parse_keys
from flask_smtp_senders.sealed import EncryptedPassword, Secret
from tests.support.tokens import flip_bit

PASSWORD = "Tr0ub4dor&3-horse"


@pytest.fixture
def key() -> bytes:
    return Fernet.generate_key()


@pytest.fixture
def cipher(key: bytes) -> PasswordCipher:
    return PasswordCipher([key])


@pytest.fixture
def encrypted(cipher: PasswordCipher) -> EncryptedPassword:
    return cipher.encrypt(PASSWORD)


def token_fragments(token: bytes, width: int = 10) -> list[str]:
    """Every ``width``-character window of the token, as text."""
    text = token.decode("ascii")
    return [text[i:i + width] for i in range(len(text) - width + 1)]


def assert_no_token(text: str, token: bytes) -> None:
    assert "gAAAAA" not in text
    for fragment in token_fragments(token):
        assert fragment not in text, f"token fragment {fragment!r} leaked"


# -- Secret and EncryptedPassword never show their value ------------------------------


def test_secret_repr_and_str_hide_the_password() -> None:
    """repr, str, f-strings and %-formatting show a mask, never the value."""
    secret = Secret(PASSWORD)
    percent = ("%s" % secret, "%r" % secret)  # noqa: UP031 - %-formatting is what we test
    for shown in (repr(secret), str(secret), f"{secret}", format(secret), *percent):
        assert PASSWORD not in shown
        assert "*" in shown
    assert secret.reveal() == PASSWORD


def test_secret_inside_a_container_repr_hides_the_password() -> None:
    """A Secret nested in a list or dict (as in a log of locals) stays masked."""
    shown = repr({"password": [Secret(PASSWORD)]})
    assert PASSWORD not in shown


def test_encrypted_password_repr_and_str_hide_the_token(encrypted: EncryptedPassword) -> None:
    """repr and str of a token say <redacted> and hold no part of it."""
    assert encrypted.token.startswith(b"gAAAAA")
    for shown in (repr(encrypted), str(encrypted), f"{encrypted}"):
        assert "redacted" in shown
        assert_no_token(shown, encrypted.token)
        assert PASSWORD not in shown


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_secret_and_encrypted_password_refuse_pickle(
    protocol: int, encrypted: EncryptedPassword
) -> None:
    """Neither can be pickled (so neither lands in a cache or a task queue)."""
    with pytest.raises(TypeError):
        pickle.dumps(Secret(PASSWORD), protocol=protocol)
    with pytest.raises(TypeError):
        pickle.dumps(encrypted, protocol=protocol)


def test_secret_and_encrypted_password_refuse_json(encrypted: EncryptedPassword) -> None:
    """json.dumps refuses both, alone or nested, and the error shows no value."""
    for value in (Secret(PASSWORD), encrypted, {"sender": [encrypted]}):
        with pytest.raises(TypeError) as excinfo:
            json.dumps(value)
        assert PASSWORD not in str(excinfo.value)
        assert_no_token(str(excinfo.value), encrypted.token)


def test_secret_refuses_shallow_copy() -> None:
    """copy.copy goes through __reduce_ex__ too, so it is refused like pickle."""
    with pytest.raises(TypeError):
        copy.copy(Secret(PASSWORD))


def test_encrypted_password_deepcopy_returns_the_same_token(
    encrypted: EncryptedPassword,
) -> None:
    """deepcopy (used by dataclasses.asdict) works and keeps the token."""
    duplicate = copy.deepcopy(encrypted)
    assert duplicate == encrypted
    assert duplicate.token == encrypted.token


def test_secrets_compare_by_value() -> None:
    """Equal passwords make equal Secrets; a Secret never equals a plain string."""
    assert Secret(PASSWORD) == Secret(PASSWORD)
    assert Secret(PASSWORD) != Secret(PASSWORD + "x")
    assert Secret(PASSWORD) != PASSWORD


# -- a Sender shows no token ------------------------------------------------------------


def make_sender(encrypted: EncryptedPassword) -> Sender:
    now = datetime.now(timezone.utc)
    return Sender(
        id=7,
        settings=SenderSettings(username="mailer", server_name="smtp.example.com",
                                from_address="noreply@example.com"),
        password=encrypted,
        version=1,
        created_at=now,
        updated_at=now,
    )


def test_sender_repr_shows_no_token(encrypted: EncryptedPassword) -> None:
    """repr(sender) leaves the password field out entirely."""
    shown = repr(make_sender(encrypted))
    assert "smtp.example.com" in shown
    assert "password" not in shown
    assert_no_token(shown, encrypted.token)


def test_sender_asdict_repr_shows_no_token(encrypted: EncryptedPassword) -> None:
    """dataclasses.asdict keeps the redacted wrapper, so its repr shows no token."""
    as_dict = dataclasses.asdict(make_sender(encrypted))
    assert as_dict["password"] == encrypted
    assert as_dict["settings"]["server_name"] == "smtp.example.com"
    assert_no_token(repr(as_dict), encrypted.token)
    assert_no_token(str(as_dict), encrypted.token)


# -- decryption failures ------------------------------------------------------------


def test_cipher_round_trips_unicode_password(cipher: PasswordCipher) -> None:
    """What is encrypted decrypts to the same text, non-ASCII included."""
    password = "Pässwörd-€-ünïcode"
    assert cipher.decrypt(cipher.encrypt(password)).reveal() == password


def test_each_encryption_gives_a_fresh_token(cipher: PasswordCipher) -> None:
    """Fernet's random IV: the same password never gives the same token twice."""
    assert cipher.encrypt(PASSWORD).token != cipher.encrypt(PASSWORD).token


@pytest.mark.parametrize(
    ("index", "part"),
    [(0, "version"), (4, "timestamp"), (12, "iv"), (30, "ciphertext"), (-1, "hmac")],
)
def test_bit_flipped_token_raises_password_unreadable_without_token_text(
    cipher: PasswordCipher, encrypted: EncryptedPassword, index: int, part: str
) -> None:
    """A corrupted token raises PasswordUnreadable (not InvalidToken) and names no token."""
    damaged = EncryptedPassword(flip_bit(encrypted.token, index))
    assert damaged.token != encrypted.token
    with pytest.raises(PasswordUnreadable) as excinfo:
        cipher.decrypt(damaged)
    error = excinfo.value
    assert not isinstance(error, InvalidToken)
    assert error.__cause__ is None and error.__suppress_context__
    for text in (str(error), repr(error)):
        assert_no_token(text, damaged.token)
        assert_no_token(text, encrypted.token)
    assert cipher.authentic(damaged) is False  # what decides "re-enter the password"
    assert cipher.authentic(encrypted) is True


def test_rotating_a_bit_flipped_token_raises_password_unreadable(
    cipher: PasswordCipher, encrypted: EncryptedPassword
) -> None:
    """rotate() reports a corrupted token as PasswordUnreadable too."""
    damaged = EncryptedPassword(flip_bit(encrypted.token, 30))
    with pytest.raises(PasswordUnreadable) as excinfo:
        cipher.rotate(damaged)
    assert not isinstance(excinfo.value, InvalidToken)
    assert_no_token(str(excinfo.value), damaged.token)


def test_token_under_another_key_raises_password_unreadable(
    cipher: PasswordCipher,
) -> None:
    """A token made with an unrelated key cannot be read."""
    foreign = PasswordCipher([Fernet.generate_key()]).encrypt(PASSWORD)
    with pytest.raises(PasswordUnreadable):
        cipher.decrypt(foreign)


def test_non_utf8_plaintext_raises_password_unreadable(key: bytes) -> None:
    """A valid token whose plaintext is not UTF-8 is unreadable, not a UnicodeDecodeError."""
    token = Fernet(key).encrypt(b"\xff\xfe not utf-8")
    with pytest.raises(PasswordUnreadable):
        PasswordCipher([key]).decrypt(EncryptedPassword(token))


def test_first_key_encrypts_and_every_key_decrypts() -> None:
    """With [new, old], new tokens are under new; old tokens still read; rotate moves them."""
    new, old = Fernet.generate_key(), Fernet.generate_key()
    legacy = PasswordCipher([old]).encrypt(PASSWORD)
    both = PasswordCipher([new, old])
    assert both.decrypt(legacy).reveal() == PASSWORD
    assert Fernet(new).decrypt(both.encrypt(PASSWORD.upper()).token) == PASSWORD.upper().encode()
    rotated = both.rotate(legacy)
    assert Fernet(new).decrypt(rotated.token) == PASSWORD.encode()
    assert PasswordCipher([new]).decrypt(rotated).reveal() == PASSWORD


# -- parse_keys ------------------------------------------------------------------------


def test_parse_keys_accepts_a_comma_separated_string() -> None:
    """Spaces and empty items around commas are ignored; order is kept."""
    first, second = Fernet.generate_key(), Fernet.generate_key()
    value = f" {first.decode()} ,{second.decode()}, "
    assert parse_keys(value) == [first, second]


def test_parse_keys_accepts_a_list_of_str_and_bytes() -> None:
    """A list may mix text and bytes keys; the result is bytes in the same order."""
    first, second = Fernet.generate_key(), Fernet.generate_key()
    assert parse_keys([first.decode(), second]) == [first, second]
    assert parse_keys((first,)) == [first]


def test_parse_keys_accepts_a_bytes_string() -> None:
    """A bytes value is read like the comma-separated string."""
    first, second = Fernet.generate_key(), Fernet.generate_key()
    assert parse_keys(first + b"," + second) == [first, second]


@pytest.mark.parametrize("position", [1, 2, 3])
@pytest.mark.parametrize(
    "bad",
    ["not-a-key", base64.urlsafe_b64encode(b"x" * 16).decode(), "!" * 44],
    ids=["not-base64", "too-short", "bad-alphabet"],
)
def test_parse_keys_rejects_a_malformed_key_naming_its_position(position: int, bad: str) -> None:
    """The message names the setting and the key's position, never the key itself."""
    keys = [Fernet.generate_key().decode() for _ in range(3)]
    keys[position - 1] = bad
    for value in (keys, ",".join(keys)):
        with pytest.raises(ConfigurationError) as excinfo:
            parse_keys(value)
        message = str(excinfo.value)
        assert "SMTP_SENDERS_ENCRYPTION_KEYS" in message
        assert f"key number {position} " in message
        assert bad not in message
        for good in keys:
            if good != bad:
                assert good not in message


@pytest.mark.parametrize("value", [None, "", b"", [], ",", " , ", ["", " "]])
def test_parse_keys_rejects_missing_or_empty_setting(value: object) -> None:
    """No key at all is a ConfigurationError naming the setting."""
    with pytest.raises(ConfigurationError, match="SMTP_SENDERS_ENCRYPTION_KEYS"):
        parse_keys(value)  # type: ignore[arg-type]

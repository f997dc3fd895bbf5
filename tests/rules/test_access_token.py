"""An OAuth2 access token in memory is sealed like a password: it never shows itself, never
leaves the process by pickle, and is never taken for a password."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

import flask_smtp_senders
from flask_smtp_senders.sealed import AccessToken, Secret

TOKEN = "ya29.a0AfB_byC-sealed.token~0123456789"


def test_repr_str_and_formatting_hide_the_token():
    token = AccessToken(TOKEN)
    percent = ("%s" % token, "%r" % token)  # noqa: UP031 - %-formatting is what we test
    for shown in (repr(token), str(token), f"{token}", format(token),
                  repr({"token": [token]}), *percent):
        assert TOKEN not in shown and "*" in shown
    assert repr(token) == "AccessToken('**********')"
    assert token.reveal() == TOKEN


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_copy_and_json_are_refused(protocol):
    with pytest.raises(TypeError, match="an AccessToken cannot be pickled"):
        pickle.dumps(AccessToken(TOKEN), protocol=protocol)
    with pytest.raises(TypeError):
        copy.copy(AccessToken(TOKEN))
    with pytest.raises(TypeError) as refused:
        json.dumps({"token": AccessToken(TOKEN)})
    assert TOKEN not in str(refused.value)


def test_a_token_is_never_equal_to_a_password_of_the_same_text():
    assert AccessToken(TOKEN) == AccessToken(TOKEN)
    assert AccessToken(TOKEN) != Secret(TOKEN) and Secret(TOKEN) != AccessToken(TOKEN)
    assert AccessToken(TOKEN) != TOKEN
    assert not isinstance(AccessToken(TOKEN), Secret)


def test_the_package_exports_it():
    assert flask_smtp_senders.AccessToken is AccessToken
    assert "AccessToken" in flask_smtp_senders.__all__

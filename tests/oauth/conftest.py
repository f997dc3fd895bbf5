"""The token server's fixtures (tests/support/token_server.py) for the OAuth2 tests, and
one Google service account key per session (an RSA key takes a moment to make)."""

from __future__ import annotations

import pytest

from tests.support.token_server import GoogleKey, make_google_key


@pytest.fixture(scope="session")
def google_key() -> GoogleKey:
    return make_google_key()

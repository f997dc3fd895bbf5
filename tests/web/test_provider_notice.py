"""The notice on the edit page of a sender at Microsoft 365's SMTP endpoint: password
sign-in for SMTP is off by default there from the end of December 2026.

Why: administrators of such senders should hear it before their test emails start to
fail, not after; senders elsewhere must not be told.
"""

from __future__ import annotations

import html

import pytest

from flask_smtp_senders.domain import is_microsoft365_smtp
from flask_smtp_senders.settings import DEFAULTS
from tests.support.pages import Admin, create

NOTICE = html.escape(DEFAULTS["SMTP_SENDERS_MSG_OFFICE365_BASIC_AUTH_NOTICE"]).encode()


@pytest.fixture
def app(make_app):
    return make_app(plugins=[Admin()])


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.mark.parametrize("name", ["smtp.office365.com", "SMTP.Office365.COM",
                                  "smtp.office365.com."])
def test_microsoft_365s_endpoint_is_named_in_any_case_with_a_trailing_dot(name):
    assert is_microsoft365_smtp(name)


@pytest.mark.parametrize("name", ["smtp.office365.com.example.org", "xsmtp.office365.com",
                                  "outlook.office365.com", "smtp.gmail.com", ""])
def test_other_names_are_not_microsoft_365s_endpoint(name):
    assert not is_microsoft365_smtp(name)


@pytest.mark.parametrize("typed", ["smtp.office365.com", "SMTP.Office365.com."])
def test_the_notice_shows_after_a_save_and_on_the_edit_page(client, service, typed):
    saved = create(client, server_name=typed)
    assert saved.status_code == 302

    after_save = client.get(saved.location).data
    again = client.get(saved.location).data

    assert b"The sender was saved." in after_save
    assert NOTICE in after_save and NOTICE in again
    [sender] = service.list_senders()
    assert sender.settings.server_name == "smtp.office365.com"


def test_no_notice_for_another_server(client):
    saved = create(client, server_name="smtp.example.com")
    assert NOTICE not in client.get(saved.location).data


def test_the_host_may_reword_the_notice(make_app):
    client = make_app(plugins=[Admin()],
                      SMTP_SENDERS_MSG_OFFICE365_BASIC_AUTH_NOTICE="Plan OAuth2.").test_client()
    saved = create(client, server_name="smtp.office365.com")
    page = client.get(saved.location).data
    assert b"Plan OAuth2." in page and NOTICE not in page

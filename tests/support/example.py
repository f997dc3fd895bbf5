"""The example portal (example_app) through Flask's test client: its admin password in the
tests, its CSRF tokens, and its login form."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

#: The admin password the tests give the portal (EXAMPLE_ADMIN_PASSWORD).
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
NEXT = re.compile(r'name="next"[^>]*value="([^"]*)"')


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def log_in(client: FlaskClient, password: str = PASSWORD, next_url: str | None = None,
           username: str = "admin"):
    page = client.get("/login", query_string={"next": next_url} if next_url else None)
    assert page.status_code == 200
    next_field = NEXT.search(page.text)
    return client.post("/login", data={
        "csrf_token": csrf_token(page.text),
        "username": username,
        "password": password,
        "next": next_field.group(1) if next_field else "",
    })


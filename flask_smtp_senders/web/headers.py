"""The response headers our pages and the API add (Case G6): a Content-Security-Policy,
X-Frame-Options, nosniff and ``no-store``, never replacing what the host set."""

from __future__ import annotations

from flask import Response, current_app, request

from ..state import is_api_path

#: What the API's answers carry (JSON is never a page to frame or run scripts in).
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"


def security_headers(response: Response, policy: str | None, *,
                     no_store: bool = True) -> Response:
    """Add our defaults to ``response`` without replacing any the host set already (a
    host-wide Content-Security-Policy or X-Frame-Options of its own wins): the CSP
    ``policy``, ``X-Frame-Options: SAMEORIGIN`` (for browsers without frame-ancestors),
    ``X-Content-Type-Options: nosniff`` and, when ``no_store``, ``Cache-Control:
    no-store`` (sender settings never go to a cache)."""
    headers = response.headers
    if policy and "Content-Security-Policy" not in headers:
        headers["Content-Security-Policy"] = policy
    headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if no_store and "Cache-Control" not in headers:
        headers["Cache-Control"] = "no-store"
    return response


def api_headers(response: Response) -> Response:
    """The API's answers (problems for unknown routes included) get the headers too."""
    if request.blueprint == "smtp_senders_api" or is_api_path(current_app.config,
                                                              request.path):
        security_headers(response, API_CONTENT_SECURITY_POLICY)
    return response

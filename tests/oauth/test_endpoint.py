"""post_form against a real HTTPS token server: where it may connect, how it proves whom
it talks to, what it sends, and how long and how much it reads.

Why: the token endpoint is a destination an administrator chose, and the request carries
a secret. Each rule is shown on the wire: the server counts connections (none when the
destination is refused), the resolver counts lookups (one, or none), the request head is
compared byte for byte, and the time a dripping or silent server can hold the call is
measured against the deadline.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from flask_smtp_senders.destinations import DestinationPolicy
from flask_smtp_senders.oauth import TokenError, post_form
from tests.support.loopback import LOOPBACK
from tests.support.smtp_servers import RawTCPServer
from tests.support.token_server import (
    GENERIC_HOST,
    MICROSOFT_HOST,
    Reply,
    Resolver,
    options_for,
)

FORM = {"grant_type": "client_credentials", "scope": "smtp send"}
#: How much later than its deadline a call may return (thread scheduling, TLS teardown).
SLACK = 0.5


def other_loopback() -> str:
    """A loopback address where nothing of ours listens."""
    return "127.0.0.3" if LOOPBACK == "127.0.0.1" else "127.0.0.1"


def refused(url, options, **keywords) -> TokenError:
    with pytest.raises(TokenError) as failure:
        post_form(url, FORM, options, **keywords)
    return failure.value


@pytest.fixture
def server(token_server):
    started = token_server()
    started.reply = Reply(200, b'{"ok": true}')
    return started


# -- what is sent --------------------------------------------------------------------------


def test_the_request_is_one_http11_post_with_our_headers_exactly(server, tls_material):
    reply = post_form(server.generic_url(), FORM, options_for(server, tls_material),
                      {"Authorization": "Basic Zm9vOmJhcg=="})

    assert (reply.status, reply.content_type, reply.body) == (200, "application/json",
                                                               b'{"ok": true}')
    [request] = server.requests
    assert request.head == (
        b"POST /generic/token HTTP/1.1\r\n"
        + f"Host: {GENERIC_HOST}:{server.port}\r\n".encode()
        + b"User-Agent: flask-smtp-senders (OAuth2 token client)\r\n"
          b"Accept: application/json\r\n"
          b"Content-Type: application/x-www-form-urlencoded\r\n"
          b"Content-Length: 45\r\n"
          b"Connection: close\r\n"
          b"Authorization: Basic Zm9vOmJhcg==\r\n\r\n")
    assert request.body == b"grant_type=client_credentials&scope=smtp+send"
    assert server.connections == 1


def test_the_query_of_the_url_is_kept_in_the_request_line(server, tls_material):
    post_form(server.url(GENERIC_HOST, "/generic/token?tenant=a%20b"), FORM,
              options_for(server, tls_material))

    assert server.requests[0].head.startswith(b"POST /generic/token?tenant=a%20b HTTP/1.1\r\n")


@pytest.mark.parametrize("headers", [{"Host": "evil.test"}, {"Content-Length": "0"},
                                     {"X-Note": "a\r\nInjected: yes"}, {"Bad Name": "x"}])
def test_headers_we_set_or_that_would_split_the_head_are_refused(server, tls_material,
                                                                headers):
    with pytest.raises(ValueError):
        post_form(server.generic_url(), FORM, options_for(server, tls_material), headers)
    assert server.connections == 0


def test_proxies_from_the_environment_are_not_used(server, tls_material, monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")

    assert post_form(server.generic_url(), FORM, options_for(server, tls_material)).status == 200
    assert len(server.requests) == 1


def test_an_ipv6_literal_is_connected_to_without_a_lookup(token_server, tls_material):
    server = token_server(host="::1")
    server.reply = Reply(200, b"{}")
    resolver = Resolver(["::1"])
    options = options_for(server, tls_material, resolver=resolver,
                          allowed=lambda name, _port, address: name == address == "::1")

    reply = post_form(server.generic_url(), FORM, options)

    assert reply.status == 200 and resolver.calls == []
    assert server.requests[0].header("Host") == f"[::1]:{server.port}"


# -- where it may connect ----------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://idp.test/generic/token", "ftp://idp.test/token", "HTTP://idp.test/",
    "https://user:pass@idp.test/token", "https://user@idp.test/token",
    "https://idp.test/token#part", "https://idp.test/token#", "https:///token",
    "https://idp.test:99999/token", "https://idp.test:abc/token", "https://idp.test:0/token",
    "https://idp test/token", "https://idp.test/to ken", "https://idp.test/\r\nX: y",
    "https://idp.test\\@evil.test/", "https://[::1/token", "https://[idp.test]/token",
    "https://::1/token", "", "idp.test/token",
])
def test_anything_but_an_https_url_with_a_host_stops_before_a_lookup(server, tls_material,
                                                                     url):
    resolver = Resolver([server.host])

    failure = refused(url, options_for(server, tls_material, resolver=resolver))

    assert (failure.stage, failure.advice) == ("url", "TOKEN_BAD_URL")
    assert resolver.calls == [] and server.connections == 0


@pytest.mark.parametrize("host", ["metadata.google.internal", "METADATA.Google.Internal.",
                                  "metadata", "instance-data.ec2.internal"])
def test_a_metadata_service_name_is_refused_before_any_lookup(server, tls_material, host):
    resolver = Resolver([server.host])

    failure = refused(f"https://{host}/token", options_for(server, tls_material,
                                                           resolver=resolver))

    assert (failure.stage, failure.advice) == ("destination", "TOKEN_DESTINATION_REFUSED")
    assert resolver.calls == [] and server.connections == 0


def test_the_default_policy_refuses_loopback_without_connecting(server, tls_material):
    resolver = Resolver([server.host])
    options = options_for(server, tls_material, resolver=resolver,
                          allowed=lambda _n, _p, address: DestinationPolicy().allows(address))

    failure = refused(server.generic_url(), options)

    assert failure.stage == "destination" and resolver.calls == [(GENERIC_HOST, server.port)]
    assert server.connections == 0


@pytest.mark.parametrize("address", ["169.254.169.254", "::ffff:169.254.169.254",
                                     "fd00:ec2::254", "0.0.0.0"])
def test_a_metadata_address_is_refused_even_where_loopback_is_allowed(server, tls_material,
                                                                     address):
    policy = DestinationPolicy(allow_loopback=True)
    options = options_for(server, tls_material, resolver=Resolver([address]),
                          allowed=lambda _n, _p, a: policy.allows(a))

    assert refused(server.generic_url(), options).stage == "destination"
    assert server.connections == 0


def test_one_refused_address_refuses_the_name_with_no_connection_at_all(server, tls_material):
    options = options_for(server, tls_material, resolver=Resolver([server.host, "10.1.2.3"]))

    assert refused(server.generic_url(), options).stage == "destination"
    assert server.connections == 0


def test_a_destination_check_that_fails_means_no(server, tls_material, caplog):
    def broken(_name, _port, _address):
        raise RuntimeError("the host's hook broke")

    failure = refused(server.generic_url(), options_for(server, tls_material, allowed=broken))

    assert failure.stage == "destination" and server.connections == 0
    assert "the destination check failed" in caplog.text


def test_an_answer_that_is_not_an_ip_address_is_refused_not_looked_up(server, tls_material):
    options = options_for(server, tls_material, resolver=Resolver(["localhost"]),
                          allowed=lambda *_: True)

    assert refused(server.generic_url(), options).stage == "destination"
    assert server.connections == 0


@pytest.mark.parametrize("answers", [[], None])
def test_a_name_that_does_not_resolve_fails_at_resolve(server, tls_material, answers):
    def resolver(name, port):
        if answers is None:
            raise OSError("NXDOMAIN")
        return answers

    failure = refused(server.generic_url(), options_for(server, tls_material,
                                                        resolver=resolver))

    assert (failure.stage, failure.advice) == ("resolve", "TOKEN_RESOLVE_FAILED")
    assert server.connections == 0


def test_it_connects_to_the_first_judged_address_that_answers_after_one_lookup(
        server, tls_material):
    resolver = Resolver([other_loopback(), server.host])
    options = options_for(server, tls_material, resolver=resolver, allowed=lambda *_: True)

    assert post_form(server.generic_url(), FORM, options).status == 200
    assert resolver.calls == [(GENERIC_HOST, server.port)]
    assert server.connections == 1


def test_a_closed_port_fails_at_connect(tls_material, server, closed_port):
    options = options_for(server, tls_material, resolver=Resolver([LOOPBACK]),
                          allowed=lambda *_: True)

    failure = refused(f"https://{GENERIC_HOST}:{closed_port}/generic/token", options)

    assert (failure.stage, failure.advice) == ("connect", "TOKEN_UNREACHABLE")


# -- whom it talks to ----------------------------------------------------------------------


@pytest.mark.parametrize("cert, advice", [("wrong_name", "TOKEN_TLS_WRONG_NAME"),
                                          ("address_only", "TOKEN_TLS_WRONG_NAME"),
                                          ("untrusted", "TOKEN_TLS_UNTRUSTED")])
def test_the_certificate_is_verified_against_the_urls_name(token_server, tls_material, cert,
                                                          advice):
    """"address_only" is valid for the very address connected to: only a check against
    the name refuses it."""
    server = token_server(cert=cert)

    failure = refused(server.generic_url(), options_for(server, tls_material))

    assert (failure.stage, failure.advice) == ("tls", advice)
    assert server.wait_for(lambda: server.tls_failures == 1) and server.requests == []


class PlainHTTPServer(RawTCPServer):
    """Answers in clear HTTP, as an endpoint without TLS on that port would."""

    def _serve(self, conn) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        self._stopping.wait(1.0)


def test_a_server_that_does_not_speak_tls_fails_at_tls(server, tls_material):
    with PlainHTTPServer() as plain:
        options = options_for(server, tls_material, resolver=Resolver([LOOPBACK]),
                              allowed=lambda *_: True)

        failure = refused(f"https://{GENERIC_HOST}:{plain.port}/generic/token", options)

    assert (failure.stage, failure.advice) == ("tls", "TOKEN_TLS_FAILED")
    assert plain.connections == 1


# -- what it reads -------------------------------------------------------------------------


def test_a_redirect_is_a_failure_and_is_not_followed(server, tls_material):
    server.reply = Reply(302, b"", headers=(("Location", f"https://{MICROSOFT_HOST}/x"),))

    failure = refused(server.generic_url(), options_for(server, tls_material))

    assert (failure.stage, failure.status, failure.advice) == ("http", 302, "TOKEN_REDIRECT")
    assert len(server.requests) == 1 and server.connections == 1


@pytest.mark.parametrize("status", [400, 401, 404, 500, 503])
def test_error_statuses_come_back_as_replies(server, tls_material, status):
    server.reply = Reply(status, b"<html>down</html>", "text/html")

    reply = post_form(server.generic_url(), FORM, options_for(server, tls_material))

    assert (reply.status, reply.content_type, reply.body) == (status, "text/html",
                                                               b"<html>down</html>")


def test_what_is_not_http_fails_at_http(server, tls_material):
    server.raw = b"SSH-2.0-OpenSSH_9.6\r\n"

    failure = refused(server.generic_url(), options_for(server, tls_material))

    assert (failure.stage, failure.advice) == ("http", "TOKEN_HTTP_ERROR")


def chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["length", "close", "chunked"])
def test_a_reply_larger_than_the_limit_fails_at_response(server, tls_material, framing):
    body = b"x" * 1001
    server.reply = {"length": Reply(200, body), "close": Reply(200, body, length=False),
                    "chunked": Reply(200, chunked(body), length=False,
                                     headers=(("Transfer-Encoding", "chunked"),))}[framing]

    failure = refused(server.generic_url(), options_for(server, tls_material,
                                                        max_response=1000))

    assert (failure.stage, failure.advice) == ("response", "TOKEN_BAD_RESPONSE")


@pytest.mark.parametrize("framing", ["length", "close", "chunked"])
def test_a_reply_at_the_limit_is_read_whole(server, tls_material, framing):
    body = b"y" * 1000
    server.reply = {"length": Reply(200, body), "close": Reply(200, body, length=False),
                    "chunked": Reply(200, chunked(body, 300), length=False,
                                     headers=(("Transfer-Encoding", "chunked"),))}[framing]

    reply = post_form(server.generic_url(), FORM, options_for(server, tls_material,
                                                              max_response=1000))

    assert reply.body == body


def test_endless_headers_are_bounded_too(server, tls_material):
    """90 headers of 900 bytes: each within http.client's limits, together over ours."""
    server.reply = Reply(200, b"{}", headers=tuple((f"X-Pad-{i}", "p" * 900)
                                                   for i in range(90)))

    failure = refused(server.generic_url(), options_for(server, tls_material,
                                                        max_response=1000))

    assert (failure.stage, failure.advice) == ("response", "TOKEN_BAD_RESPONSE")


# -- how long it takes -------------------------------------------------------------------


def timed_failure(url, options) -> tuple[TokenError, float]:
    started = time.monotonic()
    failure = refused(url, options)
    return failure, time.monotonic() - started


def test_a_slow_endpoint_is_cut_at_the_deadline(server, tls_material):
    server.delay = 10.0

    failure, took = timed_failure(server.generic_url(), options_for(
        server, tls_material, deadline=0.8, operation_timeout=5.0))

    assert (failure.stage, failure.advice) == ("timeout", "TOKEN_TIMEOUT")
    assert 0.7 < took < 0.8 + SLACK


@pytest.mark.parametrize("body_only", [False, True], ids=["head", "body"])
def test_a_dripping_endpoint_cannot_stretch_the_deadline(server, tls_material, body_only):
    """Every byte comes well inside the per-read timeout: only the deadline stops it."""
    server.reply = Reply(200, b'{"pad": "' + b"z" * 400 + b'"}')
    server.drip, server.drip_body = 0.02, body_only

    failure, took = timed_failure(server.generic_url(), options_for(
        server, tls_material, deadline=0.8, operation_timeout=2.0))

    assert failure.stage == "timeout"
    assert took < 0.8 + SLACK


def test_a_server_that_never_completes_the_handshake_is_cut_at_the_deadline(
        silent_server, tls_material, server):
    options = options_for(server, tls_material, resolver=Resolver([LOOPBACK]),
                          allowed=lambda *_: True, deadline=0.6, operation_timeout=5.0)

    failure, took = timed_failure(f"https://{GENERIC_HOST}:{silent_server.port}/t", options)

    assert failure.stage == "timeout" and took < 0.6 + SLACK
    assert silent_server.connections == 1

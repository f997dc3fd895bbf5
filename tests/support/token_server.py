"""A real OAuth2 token server on loopback, over HTTPS, for the token requests of
flask_smtp_senders.oauth: Microsoft Entra's, Google's and a generic one, with their real
errors, and knobs for every way an endpoint misbehaves.

Why: what the client must get right (the exact form and headers, a Basic header built
per RFC 6749 s2.3.1, an RS256 assertion Google would accept, a certificate checked
against the URL's name, a deadline a dripping server cannot stretch) is only proved
against a server that parses the bytes and checks the signature. It issues random
tokens it remembers, so an SMTP server (ScriptedServer's ``token_check``) accepts exactly
the tokens it issued, for the users they were issued for: ``server.valid(user, token)``.

Endpoints (one server, one certificate for every TOKEN_HOSTS name and the loopback
addresses): ``POST /{tenant}/oauth2/v2.0/token`` (Entra, client_secret_post),
``POST /token`` (Google, RFC 7523 JWT bearer), ``POST /generic/token`` (RFC 6749,
client_secret_basic or post). Knobs: ``reply`` (a fixed answer), ``raw`` (bytes sent
instead of HTTP), ``delay``, ``drip`` (seconds between bytes; ``drip_body``: the head at
once, the body dripped), ``token_type``, ``expires_in`` (MISSING: left out). Records:
``requests`` (each one's exact head and body), ``connections``, ``tls_failures``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import re
import secrets
import socket
import socketserver
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flask_smtp_senders.oauth import EndpointOptions
from tests.support.loopback import LOOPBACK
from tests.support.smtp_servers import TLSMaterial, server_context

__all__ = ["GOOGLE_HOST", "GENERIC_HOST", "MICROSOFT_HOST", "MISSING", "TOKEN_HOSTS",
           "GoogleKey", "Reply", "Resolver", "TokenServer", "entra_error", "google_error",
           "make_google_key", "options_for", "token_certs", "token_server"]

MICROSOFT_HOST, GOOGLE_HOST, GENERIC_HOST = "login.test", "oauth2.test", "idp.test"
TOKEN_HOSTS = (MICROSOFT_HOST, GOOGLE_HOST, GENERIC_HOST)
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MISSING: Any = object()
_GUID = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.I)
_DOMAIN = re.compile(r"([a-z0-9-]+\.)+[a-z]+", re.I)
_REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 401: "Unauthorized",
            404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Reply:
    """A whole answer: ``length`` False leaves Content-Length out (the body ends at close)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    length: bool = True


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived: ``head`` is the exact bytes up to the blank line."""

    method: str
    target: str
    head: bytes
    headers: tuple[tuple[str, str], ...]
    body: bytes
    form: dict[str, str]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class _Client:
    secret: str
    users: frozenset[str]
    scope: str = ""
    expired: bool = False
    disabled: bool = False
    consented: bool = True
    blocked: bool = False


@dataclass
class _Account:
    client_email: str
    client_id: str
    public_key: Any
    users: frozenset[str]
    scopes: frozenset[str]
    revoked: bool = False


@dataclass(frozen=True)
class GoogleKey:
    """A service account key made for a test: the key file's text and its parts."""

    text: str = field(repr=False)
    client_email: str
    client_id: str
    key_id: str
    private_key: Any = field(repr=False)


def make_google_key(client_email: str = "sender@portal-test.iam.gserviceaccount.com",
                    client_id: str = "104242424242424242424") -> GoogleKey:
    """A fresh RSA key in a key file shaped as Google's (JSON, PKCS#8 PEM)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    key_id = secrets.token_hex(20)
    text = json.dumps({
        "type": "service_account", "project_id": "portal-test", "private_key_id": key_id,
        "private_key": pem, "client_email": client_email, "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "universe_domain": "googleapis.com"}, indent=2)
    return GoogleKey(text, client_email, client_id, key_id, private_key)


def entra_error(status: int, error: str, code: int, message: str) -> Reply:
    """An error as Microsoft Entra shapes it (error_codes, trace and correlation ids)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    body = {"error": error,
            "error_description": f"AADSTS{code}: {message} Trace ID: {trace} "
                                 f"Correlation ID: {correlation} Timestamp: {now}",
            "error_codes": [code], "timestamp": now, "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://{MICROSOFT_HOST}/error?code={code}"}
    return Reply(status, json.dumps(body).encode())


def google_error(status: int, error: str, description: str) -> Reply:
    return Reply(status, json.dumps({"error": error, "error_description": description}).encode())


class TokenServer:
    """See the module doc. Register who may get tokens, start, point a client at it."""

    def __init__(self, *, cert: Any, host: str = LOOPBACK) -> None:
        self.host = host
        self.port = 0
        self._context = server_context(cert)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._tenants: dict[str, dict[str, _Client]] = {}
        self._clients: dict[str, _Client] = {}
        self._accounts: dict[str, _Account] = {}
        self._issued: dict[str, tuple[frozenset[str], float]] = {}
        self.reply: Reply | None = None
        self.raw: bytes | None = None
        self.delay = 0.0
        self.drip = 0.0
        self.drip_body = False
        self.token_type = "Bearer"
        self.expires_in: Any = 3599
        self.requests: list[Recorded] = []
        self.connections = 0
        self.tls_failures = 0

    # -- registrations ------------------------------------------------------------------

    def add_microsoft_app(self, tenant: str, client_id: str, secret: str, *,
                          mailboxes: Iterable[str] = (), **state: bool) -> None:
        """An app registration in a tenant, allowed to send as ``mailboxes``; ``state``:
        expired, disabled, consented, blocked."""
        self._tenants.setdefault(tenant.lower(), {})[client_id] = _Client(
            secret, frozenset(mailboxes), "https://outlook.office365.com/.default", **state)

    def add_client(self, client_id: str, secret: str, *, users: Iterable[str] = (),
                   scope: str = "") -> None:
        """A client of the generic endpoint (``scope``: the only one it may ask for)."""
        self._clients[client_id] = _Client(secret, frozenset(users), scope)

    def add_google_account(self, key: GoogleKey, *, users: Iterable[str] = (),
                           scopes: Iterable[str] = ("https://mail.google.com/",),
                           revoked: bool = False) -> None:
        """A service account's key, the Workspace users and the delegated scopes."""
        self._accounts[key.key_id] = _Account(key.client_email, key.client_id,
                                              key.private_key.public_key(),
                                              frozenset(users), frozenset(scopes), revoked)

    # -- what tests read ----------------------------------------------------------------

    def url(self, host: str, path: str) -> str:
        shown = f"[{self.host}]" if ":" in self.host else host
        return f"https://{shown}:{self.port}{path}"

    def microsoft_authority(self) -> str:
        return self.url(MICROSOFT_HOST, "")

    def google_url(self) -> str:
        return self.url(GOOGLE_HOST, "/token")

    def generic_url(self) -> str:
        return self.url(GENERIC_HOST, "/generic/token")

    def wait_for(self, condition: Callable[[], bool], timeout: float = 2.0) -> bool:
        """Poll ``condition`` until it holds (connections are served in threads: a client
        that gave up may return before the server counted what it saw)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def valid(self, user: str, token: str) -> bool:
        """Whether ``token`` was issued here, is unexpired, and may act as ``user``."""
        with self._lock:
            found = self._issued.get(token)
        return found is not None and user in found[0] and time.time() < found[1]

    # -- running ------------------------------------------------------------------------

    def start(self) -> TokenServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._server = _Server(self, (self.host, 0), family)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"TokenServer:{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- one connection -----------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        sock.settimeout(5.0)
        try:
            conn = self._context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            with self._lock:
                self.tls_failures += 1
            return
        try:
            request = _read_request(conn)
            with self._lock:
                self.requests.append(request)
            reply = self.reply or self._answer(request)
            if self.delay and self._stopping.wait(self.delay):
                return
            if self.raw is not None:
                conn.sendall(self.raw)
                return
            self._send(conn, reply)
        except (OSError, ValueError):
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _send(self, conn: ssl.SSLSocket, reply: Reply) -> None:
        lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}",
                 f"Content-Type: {reply.content_type}", "Connection: close",
                 "Cache-Control: no-store", "Pragma: no-cache",
                 *(f"{k}: {v}" for k, v in reply.headers)]
        if reply.length:
            lines.append(f"Content-Length: {len(reply.body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        data = head + reply.body
        if not self.drip:
            conn.sendall(data)
            return
        start = len(head) if self.drip_body else 0
        conn.sendall(data[:start])
        for index in range(start, len(data)):
            conn.sendall(data[index:index + 1])
            if self._stopping.wait(self.drip):
                return

    def _answer(self, request: Recorded) -> Reply:
        if request.method != "POST":
            return Reply(405, b"<h1>Method Not Allowed</h1>", "text/html")
        path = request.target.split("?", 1)[0]
        match = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", path)
        if match:
            return self._microsoft(match[1], request.form)
        if path == "/token":
            return self._google(request.form)
        if path == "/generic/token":
            return self._generic(request)
        return Reply(404, b"<h1>Not Found</h1>", "text/html")

    def _token(self, users: frozenset[str]) -> Reply:
        token = f"tsrv.{secrets.token_urlsafe(32)}"
        with self._lock:
            self._issued[token] = (users, time.time() + 3600)
        body: dict[str, Any] = {"access_token": token, "token_type": self.token_type}
        if self.expires_in is not MISSING:
            body["expires_in"] = self.expires_in
        return Reply(200, json.dumps(body).encode())

    def _microsoft(self, tenant: str, form: dict[str, str]) -> Reply:
        if not (_GUID.fullmatch(tenant) or _DOMAIN.fullmatch(tenant)):
            return entra_error(400, "invalid_request", 900023, f"Specified tenant identifier "
                               f"'{tenant}' is neither a valid DNS name, nor a valid "
                               "external domain.")
        apps = self._tenants.get(tenant.lower())
        if apps is None:
            return entra_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return entra_error(400, "unsupported_grant_type", 70003,
                               "The app requested an unsupported grant type.")
        client_id = form.get("client_id", "")
        app = apps.get(client_id)
        if app is None:
            return entra_error(400, "unauthorized_client", 700016, f"Application with "
                               f"identifier '{client_id}' was not found in the directory.")
        if app.disabled:
            return entra_error(400, "unauthorized_client", 7000112,
                               f"Application '{client_id}' is disabled.")
        if not _same(form.get("client_secret", ""), app.secret):
            return entra_error(401, "invalid_client", 7000215, "Invalid client secret "
                               "provided. Ensure the secret being sent in the request is "
                               "the client secret value, not the client secret ID.")
        if app.expired:
            return entra_error(401, "invalid_client", 7000222, "The provided client secret "
                               f"keys for app '{client_id}' are expired.")
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return entra_error(400, "invalid_scope", 1002012, "The provided value for scope "
                               "is not valid. Client credential flows must have a scope "
                               "value with /.default suffixed to the resource identifier.")
        if scope != app.scope:
            return entra_error(400, "invalid_scope", 70011, "The provided value for the "
                               "input parameter 'scope' is not valid.")
        if not app.consented:
            return entra_error(400, "invalid_grant", 65001, "The user or administrator has "
                               f"not consented to use the application with ID '{client_id}'.")
        if app.blocked:
            return entra_error(400, "invalid_grant", 53003, "Access has been blocked by "
                               "Conditional Access policies.")
        return self._token(app.users)

    def _google(self, form: dict[str, str]) -> Reply:
        if form.get("grant_type") != JWT_BEARER:
            return google_error(400, "unsupported_grant_type", "Invalid grant_type: ")
        assertion = form.get("assertion", "")
        bad_signature = google_error(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            account = self._accounts.get(jwt.get_unverified_header(assertion).get("kid"))
        except jwt.InvalidTokenError:
            return bad_signature
        if account is None or account.revoked:
            return bad_signature
        try:
            claims = jwt.decode(assertion, account.public_key, algorithms=["RS256"],
                                audience=self.google_url(),
                                options={"require": ["iss", "sub", "aud", "iat", "exp"]})
        except (jwt.InvalidSignatureError, jwt.DecodeError, jwt.InvalidAlgorithmError):
            return bad_signature
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError):
            return self._short_lived()
        except jwt.InvalidAudienceError:
            return google_error(400, "invalid_grant", "Invalid JWT: Failed audience check.")
        except jwt.InvalidTokenError:
            return google_error(400, "invalid_request", "Invalid JWT.")
        if claims["iss"] != account.client_email:
            return bad_signature
        if not 0 < claims["exp"] - claims["iat"] <= 3600:
            return self._short_lived()
        if claims.get("scope") not in account.scopes:
            return google_error(401, "unauthorized_client", "Client is unauthorized to "
                                "retrieve access tokens using this method, or client not "
                                "authorized for any of the scopes requested.")
        if claims["sub"] not in account.users:
            return google_error(400, "invalid_grant", "Invalid email or User ID")
        return self._token(frozenset({claims["sub"]}))

    @staticmethod
    def _short_lived() -> Reply:
        return google_error(400, "invalid_grant", "Invalid JWT: Token must be a short-lived "
                            "token (60 minutes) and in a reasonable timeframe. Check your "
                            "iat and exp values in the JWT claim.")

    def _generic(self, request: Recorded) -> Reply:
        form = request.form
        basic = request.header("Authorization")
        if basic is not None and "client_secret" in form:
            return google_error(400, "invalid_request", "Use one client authentication.")
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if basic is not None:
            scheme, _, encoded = basic.partition(" ")
            try:
                pair = base64.b64decode(encoded, validate=True).decode("ascii")
            except ValueError:
                pair = ""
            if scheme != "Basic" or ":" not in pair:
                return self._generic_client_refused()
            client_id, _, secret = (unquote_plus(part) for part in pair.partition(":"))
        client = self._clients.get(client_id)
        if client is None or not _same(secret, client.secret):
            return self._generic_client_refused()
        if form.get("grant_type") != "client_credentials":
            return google_error(400, "unsupported_grant_type", "Unsupported grant_type.")
        if client.scope and form.get("scope") != client.scope:
            return google_error(400, "invalid_scope", "The scope is not allowed.")
        return self._token(client.users)

    @staticmethod
    def _generic_client_refused() -> Reply:
        refused = google_error(401, "invalid_client", "Client authentication failed.")
        return Reply(401, refused.body, headers=(("WWW-Authenticate", 'Basic realm="idp"'),))


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: TokenServer, address: tuple[str, int], family: int) -> None:
        self.address_family = family
        self.owner = owner
        super().__init__(address, _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.owner._serve(self.request)  # type: ignore[attr-defined]


def _read_request(conn: ssl.SSLSocket) -> Recorded:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk or len(data) > 65536:
            raise ValueError("no complete request head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = tuple((k.strip(), v.strip()) for k, _, v in (line.partition(":")
                                                          for line in lines[1:]))
    length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            raise ValueError("the body ended early")
        body += chunk
    form = dict(parse_qsl(body.decode("ascii", "replace"), keep_blank_values=True))
    return Recorded(method, target, head + b"\r\n\r\n", headers, body, form)


# -- what a client needs ----------------------------------------------------------------


class Resolver:
    """Maps the token hosts to ``answers`` (the server's address), and counts the
    lookups; any other name is unknown."""

    def __init__(self, answers: Iterable[str]) -> None:
        self._answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, name: str, port: int) -> list[str]:
        self.calls.append((name, port))
        if name not in TOKEN_HOSTS:
            raise OSError(f"no such host in the test: {name}")
        return list(self._answers)


def options_for(server: TokenServer, tls_material: TLSMaterial, *,
                resolver: Callable[[str, int], list[str]] | None = None,
                allowed: Callable[[str, int, str], bool] | None = None,
                deadline: float = 5.0, operation_timeout: float = 2.0,
                max_response: int = 65536) -> EndpointOptions:
    """Options for a client of ``server``: the test CA, the names routed to it, and only
    its own address allowed (unless told otherwise)."""
    return EndpointOptions(
        ssl_context=tls_material.client_context(), deadline=deadline,
        operation_timeout=operation_timeout, resolver=resolver or Resolver([server.host]),
        destination_allowed=allowed or (lambda _name, _port, address: address == server.host),
        max_response=max_response)


@pytest.fixture(scope="session")
def token_certs(tls_material: TLSMaterial) -> dict[str, Any]:
    """Server certificates: "good" (every token host and loopback address, from the test
    CA), "wrong_name" (another name), "address_only" (the loopback addresses, no name),
    "untrusted" (the good names, an unknown CA)."""
    names = (*TOKEN_HOSTS, LOOPBACK, "::1")
    return {"good": tls_material.ca.issue_cert(*names),
            "wrong_name": tls_material.ca.issue_cert("elsewhere.test"),
            "address_only": tls_material.ca.issue_cert(LOOPBACK, "::1"),
            "untrusted": tls_material.untrusted_ca.issue_cert(*names)}


@pytest.fixture
def token_server(token_certs: dict[str, Any]) -> Iterator[Callable[..., TokenServer]]:
    """Factory: token_server(cert="good", host=LOOPBACK) -> a started TokenServer,
    stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(cert: str = "good", host: str = LOOPBACK) -> TokenServer:
            return stack.enter_context(TokenServer(cert=token_certs[cert], host=host))

        yield start

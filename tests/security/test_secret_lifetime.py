"""Case G11 (part): the password is decrypted only to send; a connection kept open for
reuse (pooled) holds no plaintext password once it has signed in.

smtplib's login() left the password on the SMTP object (``self.password``); ours signs in
with :meth:`SMTPClient.sign_in`, which keeps nothing, and the Connection keeps a Scrubber (a
random key and keyed digests) for its DEBUG log instead of the Secret. These tests walk
everything reachable from a connection through attributes, slots, containers, closures
and bound methods (not through classes, modules or a function's globals: those are code)
and look for the password and the forms AUTH puts on the wire. The same holds for an
OAuth2 access token and the XOAUTH2 and OAUTHBEARER initial responses that carry it.
"""

from __future__ import annotations

import base64
import collections
import types
from email.message import EmailMessage

import pytest

from flask_smtp_senders import SenderSettings, get_service
from flask_smtp_senders.sealed import AccessToken, Secret
from flask_smtp_senders.smtp import transport
from flask_smtp_senders.smtp.scrubbing import Scrubber, scrub
from tests.support.cases import CASE_CONFIG, RECIPIENT, Host, secret_forms
from tests.support.scripted_smtp import ScriptedServer
from tests.support.smtp_servers import SERVER_NAME

pytestmark = pytest.mark.sqlite_only

PASSWORD = "G11-Pooled-Pa55w0rd"
USERNAME = "alice"
NEEDLES = secret_forms(PASSWORD, USERNAME)
_LEAVES = (type, types.ModuleType, types.BuiltinFunctionType, int, float, complex, bool,
           type(None), type(Ellipsis))


def holders(root: object, needles: list[str] = NEEDLES) -> list[str]:
    """The paths from ``root`` to every string or bytes that contains a needle."""
    found: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[str, object]] = [("connection", root)]
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _LEAVES):
            continue
        seen.add(id(obj))
        if isinstance(obj, (str, bytes, bytearray, memoryview)):
            text = obj if isinstance(obj, str) else bytes(obj).decode("utf-8", "replace")
            if any(needle in text for needle in needles):
                found.append(path)
            continue
        stack += children(path, obj)
    return found


def children(path: str, obj: object) -> list[tuple[str, object]]:
    if isinstance(obj, dict):
        return [item for key, value in obj.items()
                for item in ((f"{path} key", key), (f"{path}[{key!r}]", value))]
    if isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
        return [(f"{path}[{index}]", value) for index, value in enumerate(obj)]
    if isinstance(obj, types.FunctionType):  # what a closure or a default keeps
        cells = [cell.cell_contents for cell in obj.__closure__ or ()
                 if cell.cell_contents is not cell]
        return [(f"{path} closure", cells), (f"{path} defaults",
                                             [obj.__defaults__, obj.__kwdefaults__])]
    if isinstance(obj, types.MethodType):
        return [(f"{path}.__self__", obj.__self__)]
    found: list[tuple[str, object]] = []
    if hasattr(obj, "__dict__"):
        found += [(f"{path}.{name}", value) for name, value in vars(obj).items()]
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                found.append((f"{path}.{name}", getattr(obj, name)))
    return found


def options_for(host: str, material) -> transport.TransportOptions:
    """Options whose hooks close over a string only (not a test server, which holds the
    users' passwords)."""
    return transport.TransportOptions(
        ssl_context=material.client_context(), operation_timeout=5.0, deadline=10.0,
        ehlo_name="client.example.org",
        messages={stage: f"failed at {stage}" for stage in transport.STAGES},
        resolver=lambda _name, _port: [host],
        destination_allowed=lambda _name, _port, address: address == host)


class Item:
    from_addr = "noreply@example.com"
    recipients = (RECIPIENT,)
    data = b"Subject: hi\r\n\r\nhello\r\n"


def test_the_walk_finds_a_secret_where_there_is_one():
    """Control: the walk sees through slots (Secret's), closures and containers."""
    secret = Secret(PASSWORD)
    assert holders({"a": [secret]}) == ["connection['a'][0]._sealed"]
    assert holders(lambda: secret) == ["connection closure[0]._sealed"]
    assert holders(Scrubber(USERNAME, secret)) == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
@pytest.mark.parametrize("pipelining", [False, True], ids=["lock-step", "pipelined"])
def test_a_connection_holds_no_password_after_auth_and_sends(
        scripted_server, tls_material, mechanism, pipelining):
    """Case G11: after connect() (AUTH with ``mechanism``) and two sends (lock-step, or
    pipelined), nothing reachable from the Connection, its SMTPClient session, socket, reader,
    options and scrubber holds the password or its base64 forms; and the connection is
    still usable (as a pool would keep it)."""
    server: ScriptedServer = scripted_server(auth=[mechanism], users={USERNAME: PASSWORD},
                                             pipelining=pipelining)
    options = options_for(server.host, tls_material)
    connection = transport.connect(transport.ServerAddress(SERVER_NAME, server.port, USERNAME),
                                   Secret(PASSWORD), options)
    try:
        if pipelining:
            outcomes = [outcome for _item, outcome in
                        connection.send_pipelined(iter([Item(), Item()]))]
            assert outcomes == [{}, {}]
        else:
            for _ in range(2):
                assert connection.send(Item.from_addr, Item.recipients, Item.data) == {}
        assert connection.usable and len(server.messages) == 2
        assert holders(connection) == []
        assert not hasattr(connection._smtp, "password") and not hasattr(connection,
                                                                          "_secret")
    finally:
        connection.close()


def test_the_scrubber_removes_what_scrub_removes_without_the_password():
    """Case G11: the digest Scrubber a connection keeps scrubs the exact forms as scrub()
    does (the DEBUG log stays scrubbed), and holds none of them."""
    secret = Secret(PASSWORD)
    scrubber = Scrubber(USERNAME, secret)
    text = " | ".join(["535 5.7.8", *NEEDLES, PASSWORD + PASSWORD, "end"])
    assert scrubber.scrub(text) == scrub(text, USERNAME, secret)
    assert PASSWORD not in scrubber.scrub(text)
    assert scrubber.scrub("nothing here") == "nothing here"
    assert Scrubber(USERNAME, Secret("")).scrub(text) == text
    assert holders(scrubber) == [] and PASSWORD not in repr(scrubber)


@pytest.fixture
def service(make_app):
    host = Host()
    app = make_app(plugins=[host], **CASE_CONFIG)
    with app.app_context():
        service = get_service(app)
        service.test_host = host
        yield service


def test_pooled_connections_hold_no_password(service, scripted_server):
    """Case G11, through the API: after mailer.send() the connection goes back to the pool;
    nothing reachable from any pooled connection holds the password."""
    server = scripted_server(users={USERNAME: PASSWORD})
    service.test_host.routes[SERVER_NAME] = [server.host]
    sender = service.create_sender(SenderSettings(
        username=USERNAME, server_name=SERVER_NAME, port=server.port,
        from_address="noreply@example.com"), PASSWORD)
    message = EmailMessage()
    message["To"] = RECIPIENT
    message["Subject"] = "pooled"
    message.set_content("hello")

    service.mailer.send(message, sender.id)

    pool = service.mailer.pool
    assert pool.idle_count() == 1 and len(server.messages) == 1
    pooled = [connection for stack in pool._idle.values() for connection, _since in stack]
    assert [holders(connection) for connection in pooled] == [[]]


TOKEN = "ya29.G11-Pooled-Token_0123456789abcdefghijklmnop"


def token_needles(port: int) -> list[str]:
    """The token, its base64, and the initial responses XOAUTH2 and OAUTHBEARER send."""
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    return [TOKEN, b64(TOKEN), b64(f"user={USERNAME}\x01auth=Bearer {TOKEN}\x01\x01"),
            b64(f"n,a={USERNAME},\x01host={SERVER_NAME}\x01port={port}"
                f"\x01auth=Bearer {TOKEN}\x01\x01")]


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_a_connection_holds_no_access_token_after_auth_and_sends(scripted_server,
                                                                 tls_material, mechanism):
    """Case G11, with an access token: after connect() (AUTH with ``mechanism``) and two
    sends, nothing reachable from the Connection holds the token or the base64 forms
    that carry it; the walk does find it in the AccessToken itself (the control)."""
    server: ScriptedServer = scripted_server(auth=[mechanism], tokens={USERNAME: TOKEN})
    needles = token_needles(server.port)
    assert holders({"t": AccessToken(TOKEN)}, needles) == ["connection['t']._sealed"]
    options = options_for(server.host, tls_material)
    connection = transport.connect(transport.ServerAddress(SERVER_NAME, server.port, USERNAME),
                                   AccessToken(TOKEN), options)
    try:
        for _ in range(2):
            assert connection.send(Item.from_addr, Item.recipients, Item.data) == {}
        assert connection.usable and len(server.messages) == 2
        assert server.auth_lines[0].split()[1].decode() == mechanism
        assert holders(connection, needles) == []
    finally:
        connection.close()


def test_the_scrubber_removes_what_scrub_removes_for_an_access_token():
    """Case G11, with an access token: the digest Scrubber scrubs the token's forms as
    scrub() does, the initial responses whole and base64 carrying the token at any
    alignment too, and holds none of them."""
    token = AccessToken(TOKEN)
    needles = token_needles(465)
    shifted = [base64.b64encode(b"\0" * n + TOKEN.encode()).decode() for n in (1, 2)]
    text = " | ".join(["535 5.7.8", *needles, *shifted, "end"])
    scrubber = Scrubber(USERNAME, token, host=SERVER_NAME, port=465)

    scrubbed = scrubber.scrub(text)

    assert scrubbed == scrub(text, USERNAME, token, host=SERVER_NAME, port=465)
    assert scrubbed.startswith("535 5.7.8 | ") and scrubbed.endswith(" | end")
    assert [n for n in [*needles, *shifted] if n in scrubbed] == []
    assert [core for core in (s[4:-4] for s in shifted) if core in scrubbed] == []
    assert holders(scrubber, needles) == [] and TOKEN not in repr(scrubber)

"""The host's sending API against real servers: pooled connections, one transparent
reconnect, bounded retries, per-recipient refusals, and senders edited or deleted while
messages are in flight."""

from __future__ import annotations

import threading
import time
from email.message import EmailMessage

import pytest

from flask_smtp_senders import DeliveryError, SenderNotFound, SenderSettings, events, hookimpl
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME

pytestmark = pytest.mark.sqlite_only


class Host:
    """Host plugin: points the test name at a server and records the audit trail."""

    def __init__(self) -> None:
        self.address = LOOPBACK
        self.events: list[events.AuditEvent] = []

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [self.address]

    @hookimpl
    def smtp_senders_audit(self, event):
        self.events.append(event)


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def app(make_app, host):
    return make_app(plugins=[host], SMTP_SENDERS_RETRY_BACKOFF=0.05)


def add(service, server, password="s3cret", username="alice"):
    return service.create_sender(SenderSettings(
        username=username, server_name=SERVER_NAME, port=server.port,
        from_name="Acme", from_address="noreply@example.com"), password)


def note(number: int, *to: str) -> EmailMessage:
    message = EmailMessage()
    message["To"] = ", ".join(to or ["user@example.com"])
    message["Subject"] = f"Notification {number}"
    message.set_content(f"Body of notification {number}.\n")
    return message


def test_send_fills_from_and_envelope_from_the_sender(service, smtp_server):
    server = smtp_server("implicit")
    sender = add(service, server)
    result = service.mailer.send(note(1), sender.id)
    assert result.ok and result.accepted == ("user@example.com",)
    received = server.messages[0]
    assert received.mail_from == "noreply@example.com"
    assert received.message["From"] == "Acme <noreply@example.com>"
    assert received.message["Message-ID"] == result.message_id


def test_connections_are_reused_across_calls(service, smtp_server):
    server = smtp_server("implicit")
    sender = add(service, server)
    for number in range(5):
        service.mailer.send(note(number), sender.id)
    assert len(server.messages) == 5
    assert server.connections == 1
    assert [a.succeeded for a in server.auth_attempts] == [True]


def test_bcc_is_delivered_but_not_shown(service, smtp_server):
    server = smtp_server("implicit")
    sender = add(service, server)
    message = note(1)
    message["Bcc"] = "hidden@example.com"
    service.mailer.send(message, sender.id)
    received = server.messages[0]
    assert received.rcpt_tos == ["user@example.com", "hidden@example.com"]
    assert b"hidden@example.com" not in received.data


def test_some_recipients_refused_are_reported_not_lost(service, smtp_server, host):
    """Case B15: smtplib returns partial refusals instead of raising; so do we."""
    server = smtp_server("implicit", refuse_rcpt=["gone@example.com"])
    sender = add(service, server)
    result = service.mailer.send(note(1, "a@example.com", "gone@example.com"), sender.id)
    assert result.ok
    assert result.accepted == ("a@example.com",)
    assert set(result.refused) == {"gone@example.com"}
    assert result.refused["gone@example.com"][0] == 550
    assert server.messages[0].rcpt_tos == ["a@example.com"]
    [sent] = [e for e in host.events if isinstance(e, events.MessageSent)]
    assert sent.refused == ("gone@example.com",)


def test_all_recipients_refused_is_an_error(service, smtp_server):
    server = smtp_server("implicit", refuse_rcpt=["gone@example.com"])
    sender = add(service, server)
    with pytest.raises(DeliveryError) as caught:
        service.mailer.send(note(1, "gone@example.com"), sender.id)
    assert caught.value.stage == "recipient" and caught.value.code == 550


def test_server_hanging_after_data_fails_and_the_connection_is_discarded(make_app, host,
                                                                       smtp_server):
    """Case B4: the exchange fails by the deadline, the message's fate is unknown (so it is
    not retried), and the desynced connection is not reused."""
    server = smtp_server("implicit", hang_after_data=3.0)
    app = make_app(plugins=[host], SMTP_SENDERS_OPERATION_TIMEOUT=0.5,
                   SMTP_SENDERS_TIMEOUT=1.0)
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = add(service, server)
        started = time.monotonic()
        with pytest.raises(DeliveryError) as caught:
            service.mailer.send(note(1), sender.id)
        assert time.monotonic() - started < 1.5
        assert caught.value.stage == "timeout" and caught.value.delivery_unknown
        assert service.mailer.pool.idle_count() == 0
        assert server.connections == 1  # no retry


@pytest.mark.parametrize("pipelining", [False, True])
def test_421_in_the_middle_of_a_batch_reconnects_once_and_loses_nothing(make_app, host,
                                                                       smtp_server, pipelining):
    """Case B17: the server hangs up after every 30 messages; 100 go out, each once."""
    server = smtp_server("implicit", drop_after=30, pipelining=pipelining)
    app = make_app(plugins=[host], SMTP_SENDERS_MAX_CONNECTIONS=1)
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = add(service, server)
        results = service.mailer.send_many([note(n) for n in range(100)], sender.id)
    assert all(result.ok for result in results)
    subjects = [m.message["Subject"] for m in server.messages]
    assert len(subjects) == 100 == len(set(subjects))
    assert server.connections == 4


def test_connection_closed_by_the_servers_idle_timeout_is_replaced(make_app, host,
                                                                   smtp_server):
    """Case B18: the pooled connection died while idle; the next send reconnects."""
    server = smtp_server("implicit", timeout=0.5)
    app = make_app(plugins=[host], SMTP_SENDERS_POOL_IDLE_TIMEOUT=60.0)
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = add(service, server)
        service.mailer.send(note(1), sender.id)
        time.sleep(1.0)
        result = service.mailer.send(note(2), sender.id)
    assert result.ok
    assert len(server.messages) == 2 and server.connections == 2


@pytest.mark.parametrize("pipelining", [False, True])
def test_temporary_refusals_are_retried_with_backoff_then_succeed(service, smtp_server,
                                                                  pipelining):
    server = smtp_server("implicit", tempfail_mail=2, pipelining=pipelining)
    sender = add(service, server)
    result = service.mailer.send(note(1), sender.id)
    assert result.ok and len(server.messages) == 1
    assert len(server.mail_from_seen) == 3


@pytest.mark.parametrize("pipelining", [False, True])
def test_retries_are_bounded(service, smtp_server, pipelining):
    server = smtp_server("implicit", tempfail_mail=10, pipelining=pipelining)
    sender = add(service, server)
    with pytest.raises(DeliveryError) as caught:
        service.mailer.send(note(1), sender.id)
    assert caught.value.code == 451 and caught.value.temporary
    assert len(server.mail_from_seen) == 3  # the first try and SMTP_SENDERS_SEND_RETRIES=2


def test_permanent_refusals_are_not_retried(service, smtp_server, host):
    """Case B16 through the API: 5xx at MAIL FROM is final."""
    server = smtp_server("implicit", refuse_mail=["noreply@example.com"])
    sender = add(service, server)
    with pytest.raises(DeliveryError) as caught:
        service.mailer.send(note(1), sender.id)
    assert (caught.value.stage, caught.value.code) == ("sender", 553)
    assert server.mail_from_seen == ["noreply@example.com"]
    [failed] = [e for e in host.events if isinstance(e, events.MessageFailed)]
    assert failed.stage == "sender" and failed.outcome == "failure"


def test_send_many_spreads_a_batch_over_parallel_connections(make_app, host, smtp_server):
    server = smtp_server("implicit")
    app = make_app(plugins=[host], SMTP_SENDERS_MAX_CONNECTIONS=3)
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = add(service, server)
        results = service.mailer.send_many([note(n) for n in range(30)], sender.id)
    assert [r.ok for r in results] == [True] * 30
    assert [r.message_id for r in results] == [
        m.message["Message-ID"] for m in sorted(
            server.messages, key=lambda m: int(m.message["Subject"].split()[-1]))]
    assert 2 <= server.connections <= 3


def test_edit_closes_the_old_connections_and_the_next_send_uses_the_new_server(
        service, smtp_server, host):
    """Case F3: after the edit, nothing reaches the old server, with either password."""
    old = smtp_server("implicit")
    new = smtp_server("implicit", users={"bob": "n3w-secret"})
    sender = add(service, old)
    service.mailer.send(note(1), sender.id)
    service.update_sender(sender.id, sender.version, SenderSettings(
        username="bob", server_name=SERVER_NAME, port=new.port,
        from_address="noreply@example.com"), "n3w-secret")
    assert service.mailer.pool.idle_count() == 0
    service.mailer.send(note(2), sender.id)
    assert len(old.messages) == 1 and len(old.auth_attempts) == 1
    assert len(new.messages) == 1 and new.auth_attempts[0].username == "bob"


def test_sender_deleted_during_a_batch_fails_the_rest_cleanly(make_app, host, smtp_server):
    """Case F4: remaining messages get SenderNotFound; what was sent is reported sent."""
    server = smtp_server("implicit")
    app = make_app(plugins=[host], SMTP_SENDERS_MAX_CONNECTIONS=1)
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = add(service, server)

        def delete_after_five() -> None:
            deadline = time.monotonic() + 10
            while len(server.messages) < 5 and time.monotonic() < deadline:
                time.sleep(0.001)
            with app.app_context():
                service.delete_sender(sender.id)

        deleter = threading.Thread(target=delete_after_five)
        deleter.start()
        results = service.mailer.send_many([note(n) for n in range(400)], sender.id)
        deleter.join()
    sent = [r for r in results if r.ok]
    gone = [r for r in results if isinstance(r.error, SenderNotFound)]
    assert len(sent) + len(gone) == 400
    assert 5 <= len(sent) < 400 and gone
    assert len(server.messages) == len(sent)
    assert results.index(gone[0]) == len(sent)  # in order: all sent ones come first


def test_unknown_sender_raises_not_found(service):
    with pytest.raises(SenderNotFound):
        service.mailer.send(note(1), 999)


def test_message_without_recipients_is_refused_before_connecting(service, smtp_server):
    from flask_smtp_senders import InvalidSenderData

    server = smtp_server("implicit")
    sender = add(service, server)
    message = EmailMessage()
    message["Subject"] = "nobody"
    with pytest.raises(InvalidSenderData):
        service.mailer.send(message, sender.id)
    assert server.connections == 0


def test_extension_send_uses_the_current_apps_sender(make_app, host, smtp_server):
    from flask_smtp_senders import SMTPSenders

    server = smtp_server("implicit")
    app = make_app(plugins=[host])
    with app.app_context():
        add(app.extensions["smtp_senders"], server)
        assert SMTPSenders().send(note(1)).ok
    assert len(server.messages) == 1


def test_first_sender_is_the_default_and_messages_without_a_sender_use_it(service,
                                                                           smtp_server):
    first, second = smtp_server("implicit"), smtp_server("implicit")
    a, b = add(service, first), add(service, second)
    assert (service.get_sender(a.id).is_default, service.get_sender(b.id).is_default) == (
        True, False)
    service.mailer.send(note(1))
    service.set_default_sender(b.id)
    assert [s.id for s in service.list_senders() if s.is_default] == [b.id]
    service.mailer.send(note(2))
    assert len(first.messages) == 1 and len(second.messages) == 1
    assert service.get_sender(b.id).version == b.version  # not a settings change


def test_deleting_the_default_passes_it_on_and_no_sender_means_not_found(service,
                                                                          smtp_server):
    server = smtp_server("implicit")
    a, b = add(service, server), add(service, server)
    service.delete_sender(a.id)
    assert service.default_sender().id == b.id
    service.delete_sender(b.id)
    with pytest.raises(SenderNotFound):
        service.mailer.send(note(1))


def test_a_bad_message_in_a_batch_fails_alone(service, smtp_server, host):
    from flask_smtp_senders import InvalidSenderData

    server = smtp_server("implicit")
    sender = add(service, server)
    nobody = EmailMessage()
    nobody["Subject"] = "nobody"
    results = service.mailer.send_many([note(1), nobody, note(3)], sender.id)
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, InvalidSenderData)
    assert sorted(m.message["Subject"] for m in server.messages) == ["Notification 1",
                                                                     "Notification 3"]
    assert [type(e).__name__ for e in host.events] == [
        "SenderCreated", "MessageSent", "MessageFailed", "MessageSent"]


def prepare_order(app, server, count: int) -> list[str]:
    """Which messages were prepared when, by how many the server had received."""
    order: list[str] = []

    class Spy:
        @hookimpl
        def smtp_senders_prepare_message(self, message, sender, purpose):
            order.append(f"prepare {message['Subject']} ({len(server.messages)} received)")

    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = add(service, server)
        service.plugin_manager.register(Spy())
        results = service.mailer.send_many([note(n) for n in range(count)], sender.id)
    assert all(result.ok for result in results)
    return order


def test_the_next_message_is_prepared_while_the_server_handles_the_current_one(
        make_app, host, smtp_server):
    """The single-connection interleave: message N+1 is serialised after DATA of N was
    written and before the server's answer to it was read (the server records a
    message only after a 0.2 s pause, just before it answers)."""
    server = smtp_server("implicit", hang_after_data=0.2)
    app = make_app(plugins=[host], SMTP_SENDERS_MAX_CONNECTIONS=1)
    assert prepare_order(app, server, 3) == ["prepare Notification 0 (0 received)",
                                             "prepare Notification 1 (0 received)",
                                             "prepare Notification 2 (1 received)"]
    assert len(server.messages) == 3


def test_after_an_idle_gap_every_pooled_connection_the_server_dropped_is_replaced(
        make_app, host, smtp_server):
    """Case B18 with a full pool: four idle connections all closed by the server; the next
    batch loses nothing (a reconnect must not pick another dead connection)."""
    server = smtp_server("implicit", timeout=0.5)
    app = make_app(plugins=[host], SMTP_SENDERS_MAX_CONNECTIONS=4,
                   SMTP_SENDERS_POOL_IDLE_TIMEOUT=60.0)
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = add(service, server)
        first = service.mailer.send_many([note(n) for n in range(40)], sender.id)
        time.sleep(1.0)
        second = service.mailer.send_many([note(n) for n in range(40, 80)], sender.id)
    assert all(r.ok for r in first + second)
    assert len(server.messages) == 80
    assert len({m.message["Subject"] for m in server.messages}) == 80


def test_sender_edited_during_a_batch_never_mixes_old_and_new_settings(make_app, host,
                                                                      smtp_server):
    """Case F3 in flight: messages before the edit go out whole through the old settings,
    messages after it whole through the new ones; one prepared with the old From while
    the edit landed is not sent at all."""
    from flask_smtp_senders import ConcurrentUpdate

    old = smtp_server("implicit")
    new = smtp_server("implicit", users={"bob": "n3w"})
    app = make_app(plugins=[host], SMTP_SENDERS_MAX_CONNECTIONS=1)
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = add(service, old)

        def edit_after_five() -> None:
            deadline = time.monotonic() + 10
            while len(old.messages) < 5 and time.monotonic() < deadline:
                time.sleep(0.001)
            with app.app_context():
                service.update_sender(sender.id, sender.version, SenderSettings(
                    username="bob", server_name=SERVER_NAME, port=new.port,
                    from_name="New", from_address="new@example.com"), "n3w")

        editor = threading.Thread(target=edit_after_five)
        editor.start()
        results = service.mailer.send_many([note(n) for n in range(300)], sender.id)
        editor.join()
    assert all(r.ok or isinstance(r.error, ConcurrentUpdate) for r in results)
    assert len(old.messages) + len(new.messages) == sum(r.ok for r in results)
    assert old.messages and new.messages
    assert {m.message["From"] for m in old.messages} == {"Acme <noreply@example.com>"}
    assert {m.message["From"] for m in new.messages} == {"New <new@example.com>"}
    assert {m.mail_from for m in new.messages} == {"new@example.com"}


def test_a_batch_is_pipelined_when_the_server_offers_it(make_app, host, smtp_server):
    """RFC 2920: the body of message 0 and the envelope of message 1 go out together, so
    message 2 is prepared before the server (pausing 0.2 s after each body) has recorded
    message 0; lock-step, it is prepared only once message 0 is in."""
    pipelined = smtp_server("implicit", hang_after_data=0.2, pipelining=True)
    app = make_app(plugins=[host], SMTP_SENDERS_MAX_CONNECTIONS=1)
    assert prepare_order(app, pipelined, 4) == [
        "prepare Notification 0 (0 received)", "prepare Notification 1 (0 received)",
        "prepare Notification 2 (0 received)", "prepare Notification 3 (1 received)"]
    assert [m.message["Subject"] for m in pipelined.messages] == [
        f"Notification {n}" for n in range(4)]
    assert pipelined.connections == 1


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_connection_lost_after_a_body_never_sends_that_message_twice(
        make_app, host, smtp_server, pipelining):
    """The server records message 5, then hangs up without answering: message 5's fate is
    unknown to us (reported, never sent again); the messages already on their way behind
    it are sent on a new connection, each exactly once."""
    server = smtp_server("implicit", drop_on_data=5, pipelining=pipelining)
    app = make_app(plugins=[host], SMTP_SENDERS_MAX_CONNECTIONS=1)
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = add(service, server)
        results = service.mailer.send_many([note(n) for n in range(20)], sender.id)
    failed = [(index, r.error) for index, r in enumerate(results) if not r.ok]
    assert [(index, error.delivery_unknown) for index, error in failed] == [(4, True)]
    subjects = [m.message["Subject"] for m in server.messages]
    assert sorted(subjects, key=lambda s: int(s.split()[-1])) == [
        f"Notification {n}" for n in range(20)]  # each once, the unknown one included
    assert server.connections == 2
    assert [r.message_id for r in results] == [
        m.message["Message-ID"] for m in sorted(
            server.messages, key=lambda m: int(m.message["Subject"].split()[-1]))]


def test_pipelined_refusals_stay_with_their_own_message(make_app, smtp_server, host):
    """A refused recipient, a refused body and a message with only refused recipients in
    the middle of a pipelined batch: each result says what happened to that message."""
    server = smtp_server("implicit", pipelining=True, refuse_rcpt=["gone@example.com"],
                         reject_content=[b"FORBIDDEN"])
    poisoned = note(2)
    poisoned.set_content("FORBIDDEN words\n")
    batch = [note(0), note(1, "user@example.com", "gone@example.com"), poisoned,
             note(3, "gone@example.com"), note(4)]
    app = make_app(plugins=[host], SMTP_SENDERS_MAX_CONNECTIONS=1)
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = add(service, server)
        results = service.mailer.send_many(batch, sender.id)
    assert [r.ok for r in results] == [True, True, False, False, True]
    assert results[1].accepted == ("user@example.com",)
    assert set(results[1].refused) == {"gone@example.com"}
    assert (results[2].error.stage, results[2].error.code) == ("data", 554)
    assert (results[3].error.stage, results[3].error.code) == ("recipient", 550)
    assert sorted(m.message["Subject"] for m in server.messages) == [
        "Notification 0", "Notification 1", "Notification 4"]
    assert server.connections == 1


def test_a_key_rotation_drops_the_pooled_connections_at_once(service, smtp_server):
    """The service tells the mailer of a rotation (the sender_changed signal): its idle
    connections are closed then, not at the next send, and the next send signs in again
    with the password read under the new key."""
    server = smtp_server("implicit")
    sender = add(service, server)
    service.mailer.send(note(1), sender.id)
    assert service.mailer.pool.idle_count() == 1
    assert service.rotate_keys() == (1, 0)
    assert service.mailer.pool.idle_count() == 0
    service.mailer.send(note(2), sender.id)
    assert len(server.messages) == 2 and len(server.auth_attempts) == 2


def test_an_edit_in_one_app_leaves_another_apps_pool_to_find_out_for_itself(
        make_app, host, smtp_server):
    """Two apps on one database (two workers): an edit in one empties only its own pool
    (the signal is per service), and the other app, whose cached route is now stale,
    still sends its next message through the new settings (it reads the sender's version
    before each send), never through the old server."""
    old = smtp_server("implicit")
    new = smtp_server("implicit", users={"bob": "n3w-secret"})
    editing, other = make_app(plugins=[host]), make_app(plugins=[host])
    with editing.app_context():
        sender = add(editing.extensions["smtp_senders"], old)
    for app in (editing, other):
        with app.app_context():
            app.extensions["smtp_senders"].mailer.send(note(1), sender.id)
    with editing.app_context():
        editing.extensions["smtp_senders"].update_sender(
            sender.id, sender.version, SenderSettings(
                username="bob", server_name=SERVER_NAME, port=new.port,
                from_address="noreply@example.com"), "n3w-secret")
    assert editing.extensions["smtp_senders"].mailer.pool.idle_count() == 0
    assert other.extensions["smtp_senders"].mailer.pool.idle_count() == 1
    with other.app_context():
        assert other.extensions["smtp_senders"].mailer.send(note(2), sender.id).ok
    assert len(old.messages) == 2 and len(new.messages) == 1
    assert new.auth_attempts[0].username == "bob"


def test_an_invalid_recipient_is_named_in_the_error_and_nothing_is_sent(service,
                                                                        smtp_server):
    """The sending API raises its documented InvalidSenderData, naming the header and
    the address (a batch's log says which one), never the validator's own exception."""
    from flask_smtp_senders import InvalidSenderData

    server = smtp_server("implicit")
    sender = add(service, server)
    message = note(1)
    message["Cc"] = "ops@example.com, someone@-bad-.example"
    with pytest.raises(InvalidSenderData) as invalid:
        service.mailer.send(message, sender.id)
    reason = invalid.value.errors["recipients"]
    assert reason.startswith("Cc 'someone@-bad-.example': Enter a valid email address.")
    assert server.connections == 0

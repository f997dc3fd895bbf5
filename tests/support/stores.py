"""Sender stores the tests hand the extension instead of the SQL one."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from flask_smtp_senders import ConcurrentUpdate, PasswordUnreadable, Sender, SenderNotFound


class MemoryStore:
    """A dict-based SenderStore with the same version rules as the SQL one; it keeps no
    fingerprints and no connection checks (the protocol lets a store drop them)."""

    def __init__(self) -> None:
        self.rows: dict[int, Sender] = {}
        self.next_id = 1
        self.calls: list[str] = []

    def list(self) -> list[Sender]:
        self.calls.append("list")
        return [self.rows[key] for key in sorted(self.rows)]

    def get(self, sender_id: int) -> Sender:
        self.calls.append("get")
        try:
            return self.rows[sender_id]
        except KeyError:
            raise SenderNotFound(f"no sender with id {sender_id}") from None

    def add(self, settings, password, before_commit=None, *, binding=None,
            fingerprint=None) -> Sender:
        self.calls.append("add")
        now = datetime.now(timezone.utc)
        sender = Sender(id=self.next_id, settings=settings, password=password, version=1,
                        created_at=now, updated_at=now, password_binding=binding)
        if before_commit:
            before_commit(sender)
        self.rows[sender.id] = sender
        self.next_id += 1
        return sender

    def update(self, sender_id, expected_version, settings, password,
               before_commit=None, *, binding=None, fingerprint=None) -> Sender:
        self.calls.append("update")
        current = self.get(sender_id)
        if current.version != expected_version:
            raise ConcurrentUpdate(f"sender {sender_id} was changed by someone else")
        sender = replace(current, settings=settings, password=password,
                         password_binding=binding, version=current.version + 1,
                         updated_at=datetime.now(timezone.utc))
        if before_commit:
            before_commit(sender)
        self.rows[sender_id] = sender
        return sender

    def delete(self, sender_id, expected_version=None, before_commit=None) -> None:
        self.calls.append("delete")
        current = self.get(sender_id)
        if expected_version is not None and current.version != expected_version:
            raise ConcurrentUpdate(f"sender {sender_id} was changed by someone else")
        if before_commit:
            before_commit(current)
        del self.rows[sender_id]

    def record_test(self, sender_id, ok, when, *, version=None, fingerprint=None) -> bool:
        self.calls.append("record_test")
        current = self.get(sender_id)
        if version is not None and current.version != version:
            return False  # saved since the test read it: the result is not about these
        self.rows[sender_id] = replace(current, last_test_at=when, last_test_ok=ok)
        return True

    def record_check(self, sender_id, ok, when, stage) -> None:
        self.calls.append("record_check")

    def set_default(self, sender_id, before_commit=None) -> Sender:
        self.rows = {key: replace(sender, is_default=key == sender_id)
                     for key, sender in self.rows.items()}
        if before_commit:
            before_commit(self.rows[sender_id])
        return self.rows[sender_id]

    def reencrypt(self, transform, before_commit=None, progress=None,
                  rebind=None) -> tuple[int, int]:
        self.calls.append("reencrypt")
        new_rows, unreadable = dict(self.rows), 0
        for sender_id, sender in self.rows.items():
            try:
                new, binding = transform(sender.password), sender.password_binding
                if rebind is not None:
                    binding = rebind(sender.destination, sender.password, binding, new)
                new_rows[sender_id] = replace(sender, password=new, password_binding=binding)
            except PasswordUnreadable:
                unreadable += 1
        rotated = len(self.rows) - unreadable
        if before_commit:
            before_commit(rotated, unreadable)
        self.rows = new_rows
        return rotated, unreadable


"""Damaged Fernet tokens: what a stored password looks like after a bit flips."""

from __future__ import annotations

import base64


def flip_bit(token: bytes, index: int, bit: int = 0) -> bytes:
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[index] ^= 1 << bit
    return base64.urlsafe_b64encode(bytes(raw))


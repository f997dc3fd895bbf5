"""One header line as ``email.policy.SMTP`` writes it, without the stdlib's re-folder when
the header fits on one line (fastmail's header half; fastmail.py says why it exists).

Headers are the header objects the ``email`` package makes, or strings stored with
``set_raw`` (SenderHeaders stores the sender's pre-folded headers that way). A header
object whose folded form is its text on one line -- unstructured, date, MIME-Version,
Content-*, Message-ID (their ``str()``), and address headers (the text of their parse
tree, which keeps the source's spelling) -- is written directly when that text is
printable ASCII, carries no defect and fits on one 78-character line; a string is written
line by line, as the policy does, when its lines are printable ASCII and fit. Every other
header -- a non-ASCII one, one that needs folding or RFC 2047 encoding -- is folded by the
stdlib's own ``header.fold(policy=SMTP)``, which is exactly what ``BytesGenerator`` calls.

An address header's ``_parse_tree`` is the one private attribute read here (read only;
without it the stdlib folds the header).
"""

from __future__ import annotations

import email.policy
import re
import sys
from email import headerregistry

POLICY = email.policy.SMTP
#: The line ending the SMTP policy writes.
NL = "\r\n"
#: The longest line the policy writes unfolded.
MAX_LINE = POLICY.max_line_length or sys.maxsize
#: An RFC 5322 field name: printable ASCII but ':'.
FIELD_NAME = re.compile(r"[!-9;-~]+")

# Header classes whose str() is the text of their parse tree (``decoded`` is set to
# ``str(parse_tree)`` by their ``parse``), so a line that fits folds to "Name: text".
_VERBATIM_BASES = frozenset({
    headerregistry.UnstructuredHeader,
    headerregistry.UniqueUnstructuredHeader,
    headerregistry.DateHeader,
    headerregistry.UniqueDateHeader,
    headerregistry.MIMEVersionHeader,
    headerregistry.ContentTypeHeader,
    headerregistry.ContentDispositionHeader,
    headerregistry.ContentTransferEncodingHeader,
    headerregistry.MessageIDHeader,
})

# Address headers fold from their parse tree, which keeps the source's spelling
# ("<a@b.c>" stays so, while str() says "a@b.c"): the tree's text is what a line that fits
# holds.
_ADDRESS_BASES = frozenset({
    headerregistry.AddressHeader,
    headerregistry.UniqueAddressHeader,
    headerregistry.SingleAddressHeader,
    headerregistry.UniqueSingleAddressHeader,
})


class Unhandled(Exception):
    """Not the common case: the stdlib serialises this message."""


def fold(name: str, value: object) -> str:
    """What ``POLICY.fold_binary(name, value)`` writes, before encoding; raises
    :class:`Unhandled` for a string value the policy would refold."""
    if not isinstance(value, headerregistry.BaseHeader):
        return _raw_line(name, value)
    # HeaderRegistry makes a new class per header (type('_' + base, (base, BaseHeader))),
    # so look at its first base every time rather than caching by class.
    bases = type(value).__bases__
    base = bases[0] if bases else None
    if base in _VERBATIM_BASES:
        text = str(value)
    elif base in _ADDRESS_BASES:  # folded from its parse tree: the source's spelling
        tree = getattr(value, "_parse_tree", None)
        text = "" if tree is None else str(tree)
    else:
        text = ""
    name = value.name  # BaseHeader.fold writes its own name, not the stored key
    if (text and len(name) + len(text) + 2 <= MAX_LINE and text.isascii()
            and text.isprintable() and "=?" not in text and not value.defects
            and FIELD_NAME.fullmatch(name)):
        return f"{name}: {text}{NL}"
    return value.fold(policy=POLICY)


def _raw_line(name: str, value: object) -> str:
    """A value stored as a string (``set_raw``, as SenderHeaders does): the policy writes
    its lines back as they are unless one is too long (then it re-parses and refolds:
    the stdlib's job). Only printable ASCII lines are taken here."""
    if not isinstance(value, str) or not FIELD_NAME.fullmatch(name):
        raise Unhandled("a raw header of another kind")
    lines = value.splitlines()
    if not all(line.isascii() and line.isprintable() for line in lines):
        raise Unhandled("a raw header with other characters")
    if lines and (len(lines[0]) + len(name) + 2 > MAX_LINE
                  or any(len(line) > MAX_LINE for line in lines[1:])):
        raise Unhandled("a raw header the policy refolds")
    return f"{name}: {NL.join(lines)}{NL}"

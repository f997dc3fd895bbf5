"""The time left for one exchange with a server: an SMTP session or a token request.

Why: each network operation has its own timeout, but a server that drips one byte at a
time would meet every one of them and still hold a worker for ever; the deadline bounds
the whole exchange. Every read and write asks it for its timeout. Part of the vocabulary
because both network parts (smtp/ and oauth/) use it. This module knows nothing of Flask.
"""

from __future__ import annotations

import time


class Deadline:
    """The time left for one exchange; hands out per-operation timeouts that respect it."""

    def __init__(self, seconds: float, operation_timeout: float) -> None:
        self._end = time.monotonic() + seconds
        self._operation_timeout = operation_timeout
        #: Set once any operation ran out of time.
        self.tripped = False

    def next_timeout(self) -> float:
        """The timeout of the next operation; raises TimeoutError once time is up."""
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            self.tripped = True
            raise TimeoutError("the exchange ran past its deadline")
        return min(self._operation_timeout, remaining)

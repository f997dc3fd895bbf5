"""``flask smtp-senders ...``: keys, senders, checks and the schema from the command line.

Each module registers its commands on the one group (:mod:`.group`); importing this
package brings them all. See docs/cli.md.
"""

from . import changes, check, keys, listing, schema  # noqa: F401 - registers the commands
from .group import cli

__all__ = ["cli"]

"""``python -m flask_smtp_senders.cli``: print a first encryption key, before any app has one."""

from .keys import generate_key

generate_key(prog_name="python -m flask_smtp_senders.cli")

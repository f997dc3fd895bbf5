"""Where senders live: the store protocol, its SQLAlchemy implementation, the table and
its migrations."""

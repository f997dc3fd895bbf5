"""Where senders live: the store protocol (``base``), its SQLAlchemy implementation
(``sqlalchemy``), the table (``models``), its schema upgrades and their migrations."""

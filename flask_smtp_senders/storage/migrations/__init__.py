"""flask-smtp-senders' own Alembic migrations (run by :mod:`flask_smtp_senders.storage.schema`).

``env.py`` is the environment, ``versions/`` the revisions; nothing here is imported by
the package itself.
"""

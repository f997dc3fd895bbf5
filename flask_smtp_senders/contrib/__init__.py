"""Optional integrations, each behind an extra: Celery dispatch (``celery``) and the
Senders pages inside a Flask-Admin shell (``flask-admin``)."""

"""Talking SMTP to an administrator's server: the session (connect, TLS, EHLO, AUTH), the
mail transactions over it, and the diagnosis of each exchange. Knows nothing of Flask."""

"""Tests of the services: sending, Celery, hooks, the extension and its state."""

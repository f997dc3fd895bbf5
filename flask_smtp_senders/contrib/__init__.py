"""Optional integrations, each behind an extra: Celery dispatch."""

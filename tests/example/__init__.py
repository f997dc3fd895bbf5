"""Tests of the example portal (example_app)."""

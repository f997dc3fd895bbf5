"""Tests of the flask smtp-senders commands."""

"""Tests of the mail layer: building and sending messages."""

"""Tests of the OAuth2 part: token requests against a real HTTPS token server."""

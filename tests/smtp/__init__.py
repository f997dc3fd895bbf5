"""Tests of the SMTP layer: the transport on the wire, diagnostics, and the test servers."""

"""The contract's port rule: 25, 587 and 2525 use SMTP with STARTTLS; every other port
uses SMTPS. (Against real servers of each kind: tests/smtp/test_transport.py.)"""

from __future__ import annotations

import pytest

from flask_smtp_senders import Security, security_for_port


@pytest.mark.parametrize("port", [25, 587, 2525])
def test_starttls_ports(port):
    assert security_for_port(port) is Security.STARTTLS


@pytest.mark.parametrize("port", [1, 24, 26, 465, 586, 588, 2465, 2524, 2526, 8025, 5870,
                                  25250, 65535])
def test_every_other_port_uses_smtps(port):
    assert security_for_port(port) is Security.SMTPS


def test_rule_over_the_whole_port_range():
    starttls = {port for port in range(1, 65536) if security_for_port(port) is Security.STARTTLS}
    assert starttls == {25, 587, 2525}

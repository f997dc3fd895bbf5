"""What the tests share, by job; test modules import from here, never from each other.

- loopback: the loopback address of the run (SMTP_SENDERS_TEST_LOOPBACK), where every test
  server listens, and the fallback addresses for fixed ports.
- smtp_servers, scripted_smtp: the real SMTP and TCP servers on loopback, as fixtures
  (tests/conftest.py loads both as pytest plugins); oauth_smtp: the ScriptedServer's
  XOAUTH2 and OAUTHBEARER.
- hosts, cases: host plugins and the helpers of the security-case tests.
- pages: reading and posting Settings > Senders pages through Flask's test client.
- databases: the SQLite and PostgreSQL databases of the ``database`` fixture, locked tables.
- stores: a sender store in memory.
- tokens: damaged Fernet tokens.
- ratelimit: apps and Send Test Email bursts for the rate-limit tests.
- example: the example portal's login through the test client.
- portal, browser: the example portal in a subprocess and the steps the Chromium tests take.

Nothing here is imported by the package itself. Keep this file free of imports: the browser
tests' portal subprocess imports tests.support.portal.
"""

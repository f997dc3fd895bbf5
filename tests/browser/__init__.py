"""Real-browser tests of Settings > Senders in the example portal, driven in Chromium.

``run_portal()`` is what the fixtures start in a subprocess (``python -c``): the example
portal on a free 127.0.0.1 port, with SQLite, keys and its mail catcher in a temporary
instance folder. It imports neither pytest nor Playwright.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

#: The mail catcher listens on port 2525 (so the port rule picks STARTTLS) on the first free
#: loopback address from 127.0.0.2 on: never 127.0.0.1, where ``make demo`` may run one.
CATCHER_PORT = 2525
CATCHER_HOSTS = [f"127.0.0.{last}" for last in range(2, 40)]
READY = "PORTAL READY"


def _start_catcher(instance: str, password: str) -> Any:
    from example_app.catcher import start_catcher

    for host in CATCHER_HOSTS:
        try:
            return start_catcher(instance, host, CATCHER_PORT, password)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                raise
    raise OSError(errno.EADDRINUSE, f"port {CATCHER_PORT} is busy on 127.0.0.2-39")


def run_portal() -> None:
    """Serve the portal until killed; print ``PORTAL READY <url> <catcher host>`` once it
    listens.

    Reads ``PORTAL_INSTANCE``, ``PORTAL_ADMIN_PASSWORD`` and ``PORTAL_CATCHER_PASSWORD``.
    """
    from cryptography.fernet import Fernet
    from werkzeug.serving import make_server

    from example_app import create_app
    from example_app.dns_server import DEMO_ZONE, DNSServer

    instance = os.environ["PORTAL_INSTANCE"]
    catcher = _start_catcher(instance, os.environ["PORTAL_CATCHER_PASSWORD"])
    dns = DNSServer(DEMO_ZONE).start()
    app = create_app({
        "INSTANCE_PATH": instance,
        "CATCHER": catcher,
        "DNS": dns,
        "SECRET_KEY": os.urandom(32).hex(),
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance}/portal.db",
        "SMTP_SENDERS_ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
        "SMTP_SENDERS_CA_FILE": catcher.ca_file,
        "SMTP_SENDERS_EHLO_NAME": "portal.test",
        "EXAMPLE_ADMIN_PASSWORD": os.environ["PORTAL_ADMIN_PASSWORD"],
    })
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"{READY} http://127.0.0.1:{server.server_port} {catcher.host}", flush=True)
    try:
        server.serve_forever()
    finally:
        catcher.stop()
        dns.stop()
        sys.stdout.flush()

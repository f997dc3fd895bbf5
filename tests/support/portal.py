"""The example portal the browser tests drive, run in a subprocess.

``run_portal()`` is what tests/browser/conftest.py starts (``python -c "from
tests.support.portal import run_portal; run_portal()"``): the example portal on a free port
of the run's loopback address (tests/support/loopback.py, passed on in the environment),
with SQLite, keys and its mail catcher in a temporary instance folder. It imports neither
pytest nor Playwright.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tests.support.loopback import LOOPBACK, bind_fixed_port

#: The mail catcher listens on port 2525 (so the port rule picks STARTTLS) on the run's
#: loopback address, or the first spare one from 127.0.0.2 on where 2525 is free: never
#: 127.0.0.1, where ``make demo`` may run one.
CATCHER_PORT = 2525
READY = "PORTAL READY"


def _start_catcher(instance: str, password: str) -> Any:
    from example_app.catcher import start_catcher

    return bind_fixed_port(
        CATCHER_PORT, lambda host: start_catcher(instance, host, CATCHER_PORT, password))


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
    server = make_server(LOOPBACK, 0, app, threaded=True)
    print(f"{READY} http://{LOOPBACK}:{server.server_port} {catcher.host}", flush=True)
    try:
        server.serve_forever()
    finally:
        catcher.stop()
        dns.stop()
        sys.stdout.flush()

"""``python -m example_app`` (``make demo``): the portal, its mail catcher and the DNS
server that answers the From-domain advice, all on loopback.

Ctrl-C (or ``kill``) stops the web server, then the catcher and the DNS server.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

from flask_smtp_senders import Security, security_for_port
from flask_smtp_senders.extension import api_prefix

from . import API_TOKEN_FILE, auth, create_app, default_instance_path
from .catcher import start_catcher
from .dns_server import DEMO_ZONE, DNSServer

WEB_HOST = "127.0.0.1"


_stopping = threading.Event()


def _stop_once(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C and ``kill`` stop the demo; make passes the signal on to us as well, and a
    second one must not cut the cleanup short, so only the first one counts."""
    if not _stopping.is_set():
        _stopping.set()
        raise KeyboardInterrupt


def main() -> int:
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("example_app").setLevel(logging.INFO)
    # aiosmtpd 1.4 warns about its own use of a deprecated attribute at every AUTH.
    logging.getLogger("mail.log").addFilter(
        lambda record: "login_data is deprecated" not in record.getMessage())
    port = int(os.environ.get("PORT") or 5000)
    instance = default_instance_path()
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)

    try:
        catcher = start_catcher(instance)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    dns = DNSServer(DEMO_ZONE).start()
    try:
        app = create_app({"INSTANCE_PATH": str(instance), "CATCHER": catcher, "DNS": dns})
        app.logger.setLevel(logging.INFO)
        signal.signal(signal.SIGTERM, _stop_once)
        signal.signal(signal.SIGINT, _stop_once)
        if os.environ.get("EXAMPLE_ADMIN_PASSWORD"):
            login = f"Log in as {auth.ADMIN_USER} with the password in EXAMPLE_ADMIN_PASSWORD"
        else:
            login = (f"Log in as {auth.ADMIN_USER} / {auth.DEFAULT_PASSWORD} "
                     "(set EXAMPLE_ADMIN_PASSWORD to change it)")
        print(
            f"\nPortal:       http://{WEB_HOST}:{port}\n"
            f"{login}\n"
            f"JSON API:     http://{WEB_HOST}:{port}{api_prefix(app.config)}/openapi.json "
            f"(Authorization: Bearer <the token in {instance / API_TOKEN_FILE}>)\n"
            f"\nMail catcher: {catcher.host}:{catcher.port} (STARTTLS; its CA is "
            f"{catcher.ca_file})\n"
            "Add a sender under Settings > Senders with:\n"
            f"  Server Name   {catcher.server_name}\n"
            f"  Port          {catcher.port}\n"
            f"  Username      {catcher.username}\n"
            f"  Password      {catcher.password}\n"
            "  From Address  portal@example.com\n"
            f"then Send Test Email and open http://{WEB_HOST}:{port}/catcher\n"
            f"(SPF and DMARC advice for example.com comes from a DNS server on "
            f"127.0.0.1:{dns.port})\n"
            "Ctrl-C stops all three.\n",
            flush=True,
        )
        if security_for_port(catcher.port) is not Security.STARTTLS:
            print(f"warning: the portal uses SMTPS (implicit TLS) on port {catcher.port}, but "
                  "the catcher speaks STARTTLS: use CATCHER_PORT 2525, 587 or 25.",
                  file=sys.stderr, flush=True)
        app.run(host=WEB_HOST, port=port, debug=False, use_reloader=False, threaded=True)
    except KeyboardInterrupt:
        pass
    finally:
        _stopping.set()  # from here on, signals change nothing
        catcher.stop()
        dns.stop()
        print("Stopped the portal, the mail catcher and the DNS server.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

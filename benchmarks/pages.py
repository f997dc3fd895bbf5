"""In-process latency of the Senders pages, against a bare Flask route in the same run.

Run: ``.venv/bin/python benchmarks/pages.py`` (or ``make bench``). Prints a table of
median latencies and their ratio to the baseline route, which renders one tiny template.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet
from flask import Flask, render_template_string
from flask_sqlalchemy import SQLAlchemy

from flask_smtp_senders import SenderSettings, SMTPSenders, hookimpl

ROUNDS = 300
SENDERS = 50


class AllowAll:
    @hookimpl
    def smtp_senders_authorize(self, action, sender_id):
        return True


def build_app(folder: Path) -> Flask:
    app = Flask("bench")
    app.config.update(SECRET_KEY="bench",  # noqa: S106 - a throwaway app
                      SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder}/b.db",
                      SMTP_SENDERS_ENCRYPTION_KEYS=[Fernet.generate_key().decode()],
                      SMTP_SENDERS_CREATE_TABLES=True)
    SMTPSenders(app, db=SQLAlchemy(app), plugins=[AllowAll()])

    @app.get("/baseline")
    def baseline() -> str:
        return render_template_string("<p>{{ n }}</p>", n=1)

    with app.app_context():
        service = app.extensions["smtp_senders"]
        for number in range(SENDERS):
            service.create_sender(SenderSettings(
                username=f"user{number}", server_name=f"smtp{number}.example.com",
                port=587, from_address=f"n{number}@example.com"), "password")
    return app


def median_ms(client, url: str) -> float:
    for _ in range(20):  # warm up template caches and the connection pool
        client.get(url)
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
    return statistics.median(samples) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        client = build_app(Path(folder)).test_client()
        rows = [
            ("bare Flask route (baseline)", "/baseline"),
            (f"Senders list, {SENDERS} senders", "/settings/senders/"),
            ("Add step (Sender Type)", "/settings/senders/new"),
            ("new sender form", "/settings/senders/new/email/custom"),
            ("edit form with test modal", "/settings/senders/1"),
        ]
        results = [(label, median_ms(client, url)) for label, url in rows]
    base = results[0][1]
    print(f"{'page':<32} {'median ms':>10} {'x baseline':>11}")
    for label, ms in results:
        print(f"{label:<32} {ms:>10.3f} {ms / base:>11.1f}")


if __name__ == "__main__":
    main()

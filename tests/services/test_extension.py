"""SMTPSenders.init_app: configuration checks, defaults, several apps, replaceable stores."""

from __future__ import annotations

import base64
import math

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import inspect

from flask_smtp_senders import (
    ConcurrentUpdate,
    ConfigurationError,
    PasswordUnreadable,
    SenderSettings,
    SenderStore,
    SMTPSenders,
    SQLAlchemyStore,
    get_service,
    hookimpl,
)
from flask_smtp_senders.settings import DEFAULTS
from tests.support.stores import MemoryStore

PASSWORD = "CorrectHorse-Battery-42"
UNSET = object()


def settings(**overrides: object) -> SenderSettings:
    values: dict[str, object] = {
        "username": "mailer@example.com",
        "server_name": "smtp.example.com",
        "from_address": "noreply@example.com",
    }
    values.update(overrides)
    return SenderSettings(**values)  # type: ignore[arg-type]


def host_app(tmp_path, name: str = "host", **config: object) -> Flask:
    """A Flask app with valid settings on its own SQLite file; ``UNSET`` removes a key."""
    app = Flask(name)
    app.config.update(
        SECRET_KEY="host-secret",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / f'{name}.db'}",
        SMTP_SENDERS_ENCRYPTION_KEYS=[Fernet.generate_key().decode()],
    )
    for key, value in config.items():
        if value is UNSET:
            app.config.pop(key, None)
        else:
            app.config[key] = value
    return app


@pytest.fixture
def dispose():
    """Dispose of the engines of (app, db) pairs registered by the test."""
    made: list[tuple[Flask, SQLAlchemy]] = []
    yield made.append
    for app, db in made:
        with app.app_context():
            db.engine.dispose()


def init(app: Flask, dispose) -> SQLAlchemy:
    db = SQLAlchemy(app)
    dispose((app, db))
    SMTPSenders(app, db=db)
    return db


def config_error(app: Flask, dispose) -> str:
    """The ConfigurationError message init_app raises for ``app``; no service is left."""
    with pytest.raises(ConfigurationError) as excinfo:
        init(app, dispose)
    assert "smtp_senders" not in app.extensions
    return str(excinfo.value)


# -- configuration errors name the setting ----------------------------------------------


@pytest.mark.parametrize("value", [UNSET, None, ""], ids=["absent", "none", "empty"])
def test_missing_secret_key_raises_configuration_error_naming_it(
    tmp_path, dispose, value: object
) -> None:
    """Without SECRET_KEY (needed for CSRF) init_app refuses to start."""
    message = config_error(host_app(tmp_path, SECRET_KEY=value), dispose)
    assert "SECRET_KEY" in message


@pytest.mark.parametrize(
    "value",
    [
        UNSET,
        None,
        "",
        b"",
        [],
        ",",
        "not-a-key",
        base64.urlsafe_b64encode(b"k" * 16).decode(),
        ["not-a-key"],
    ],
    ids=["absent", "none", "empty-string", "empty-bytes", "empty-list", "only-comma",
         "not-a-key", "too-short", "list-with-bad-key"],
)
def test_missing_empty_or_malformed_keys_raise_configuration_error_naming_the_setting(
    tmp_path, dispose, value: object
) -> None:
    """SMTP_SENDERS_ENCRYPTION_KEYS is named, and a bad key is not echoed back."""
    message = config_error(host_app(tmp_path, SMTP_SENDERS_ENCRYPTION_KEYS=value), dispose)
    assert "SMTP_SENDERS_ENCRYPTION_KEYS" in message
    if isinstance(value, str) and len(value) > 1:
        assert value not in message


def test_malformed_second_key_is_named_by_position(tmp_path, dispose) -> None:
    """With a good first key, the message says it is the second key that is wrong."""
    keys = f"{Fernet.generate_key().decode()},not-a-key"
    message = config_error(host_app(tmp_path, SMTP_SENDERS_ENCRYPTION_KEYS=keys), dispose)
    assert "SMTP_SENDERS_ENCRYPTION_KEYS" in message
    assert "2" in message
    assert keys.split(",")[0] not in message


def test_missing_ca_file_raises_configuration_error_naming_it(tmp_path, dispose) -> None:
    """A CA bundle path that does not exist fails at start, naming SMTP_SENDERS_CA_FILE."""
    missing = tmp_path / "no-such-ca.pem"
    message = config_error(host_app(tmp_path, SMTP_SENDERS_CA_FILE=str(missing)), dispose)
    assert "SMTP_SENDERS_CA_FILE" in message


def test_ca_file_without_certificates_raises_configuration_error(tmp_path, dispose) -> None:
    """A file that is not a PEM bundle is refused like a missing one."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    message = config_error(host_app(tmp_path, SMTP_SENDERS_CA_FILE=str(garbage)), dispose)
    assert "SMTP_SENDERS_CA_FILE" in message


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, True, "15"],
                         ids=["zero", "zero-float", "negative", "negative-float", "bool", "str"])
def test_non_positive_timeout_raises_configuration_error_naming_it(
    tmp_path, dispose, value: object
) -> None:
    """SMTP_SENDERS_TIMEOUT must be a positive number of seconds."""
    message = config_error(host_app(tmp_path, SMTP_SENDERS_TIMEOUT=value), dispose)
    assert "SMTP_SENDERS_TIMEOUT" in message


@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_operation_timeout_raises_configuration_error_naming_it(
    tmp_path, dispose, value: object
) -> None:
    """SMTP_SENDERS_OPERATION_TIMEOUT is checked the same way, under its own name."""
    message = config_error(host_app(tmp_path, SMTP_SENDERS_OPERATION_TIMEOUT=value), dispose)
    assert "SMTP_SENDERS_OPERATION_TIMEOUT" in message


@pytest.mark.parametrize("key", ["SMTP_SENDERS_TIMEOUT", "SMTP_SENDERS_OPERATION_TIMEOUT"])
def test_nan_timeout_raises_configuration_error_naming_it(tmp_path, dispose, key: str) -> None:
    """NaN is not a positive number of seconds: it must fail at start, not at first send."""
    message = config_error(host_app(tmp_path, **{key: math.nan}), dispose)
    assert key in message


@pytest.mark.parametrize("value", ["bad host", "host\r\nname", "host\x00"])
def test_ehlo_name_with_space_or_line_break_raises_configuration_error(
    tmp_path, dispose, value: str
) -> None:
    """An EHLO name that could inject SMTP commands is refused, naming the setting."""
    message = config_error(host_app(tmp_path, SMTP_SENDERS_EHLO_NAME=value), dispose)
    assert "SMTP_SENDERS_EHLO_NAME" in message


def test_app_without_db_store_or_hook_raises_configuration_error(tmp_path) -> None:
    """No way to store senders is a start-up error, not a failure at first use."""
    app = host_app(tmp_path)
    with pytest.raises(ConfigurationError, match="store"):
        SMTPSenders(app)
    assert "smtp_senders" not in app.extensions


# -- defaults ------------------------------------------------------------------------


def test_init_fills_in_every_default_and_keeps_host_values(tmp_path, dispose) -> None:
    """Every DEFAULTS key is in app.config afterwards; host-set values are kept as given."""
    app = host_app(tmp_path, SMTP_SENDERS_TIMEOUT=7.5,
                   SMTP_SENDERS_MSG_TIMEOUT="Le serveur ne répond pas.")
    keys = app.config["SMTP_SENDERS_ENCRYPTION_KEYS"]
    init(app, dispose)
    for key in DEFAULTS:
        assert key in app.config, key
    assert app.config["SMTP_SENDERS_TIMEOUT"] == 7.5
    assert app.config["SMTP_SENDERS_MSG_TIMEOUT"] == "Le serveur ne répond pas."
    assert app.config["SMTP_SENDERS_ENCRYPTION_KEYS"] == keys
    host_set = {"SMTP_SENDERS_TIMEOUT", "SMTP_SENDERS_MSG_TIMEOUT",
                "SMTP_SENDERS_ENCRYPTION_KEYS"}
    for key, default in DEFAULTS.items():
        if key not in host_set:
            assert app.config[key] == default, key


def test_documented_default_values(tmp_path, dispose) -> None:
    """The defaults a host gets without setting anything are the documented ones."""
    app = host_app(tmp_path)
    init(app, dispose)
    assert app.config["SMTP_SENDERS_CA_FILE"] is None
    assert app.config["SMTP_SENDERS_OPERATION_TIMEOUT"] == 5.0
    assert app.config["SMTP_SENDERS_TIMEOUT"] == 15.0
    assert app.config["SMTP_SENDERS_EHLO_NAME"] is None
    assert app.config["SMTP_SENDERS_CREATE_TABLES"] is False
    assert "{recipient}" in app.config["SMTP_SENDERS_MSG_TEST_SUCCESS"]
    assert app.config["SMTP_SENDERS_MSG_AUTH_FAILED"] == (
        "Using the credentials you provided, we couldn't authenticate with your email server."
    )
    options = get_service(app).transport_options
    assert (options.operation_timeout, options.deadline) == (5.0, 15.0)
    assert options.ehlo_name


def test_create_tables_false_leaves_the_database_untouched(tmp_path, dispose) -> None:
    """With SMTP_SENDERS_CREATE_TABLES off, init_app creates no table."""
    app = host_app(tmp_path, SMTP_SENDERS_CREATE_TABLES=False)
    db = init(app, dispose)
    with app.app_context():
        assert not inspect(db.engine).has_table("smtp_senders")


# -- one extension object, two apps ---------------------------------------------------


def test_one_extension_object_keeps_two_apps_senders_and_keys_apart(tmp_path, dispose) -> None:
    """Each app has its own service, database and keys; nothing crosses over."""
    app1 = host_app(tmp_path, "first", SMTP_SENDERS_CREATE_TABLES=True)
    app2 = host_app(tmp_path, "second", SMTP_SENDERS_CREATE_TABLES=True)
    assert (app1.config["SMTP_SENDERS_ENCRYPTION_KEYS"]
            != app2.config["SMTP_SENDERS_ENCRYPTION_KEYS"])
    db = SQLAlchemy()
    db.init_app(app1)
    db.init_app(app2)
    dispose((app1, db))
    dispose((app2, db))
    ext = SMTPSenders(db=db)
    ext.init_app(app1)
    ext.init_app(app2)

    with app1.app_context():
        service1 = ext.service
        assert service1 is app1.extensions["smtp_senders"]
        first = service1.create_sender(settings(from_name="App one"), PASSWORD)
    with app2.app_context():
        service2 = ext.service
        assert service2 is app2.extensions["smtp_senders"]
        assert service2 is not service1
        assert service2.list_senders() == []
        second = service2.create_sender(settings(from_name="App two"), PASSWORD)
        assert [s.settings.from_name for s in service2.list_senders()] == ["App two"]
        assert not service2.password_readable(first)
        with pytest.raises(PasswordUnreadable):
            service2.cipher.decrypt(first.password)
    with app1.app_context():
        assert ext.service is service1
        assert [s.settings.from_name for s in service1.list_senders()] == ["App one"]
        assert service1.cipher.decrypt(first.password).reveal() == PASSWORD
        assert not service1.password_readable(second)
    assert (tmp_path / "first.db").exists() and (tmp_path / "second.db").exists()


def test_service_outside_an_app_context_raises(tmp_path, dispose) -> None:
    """ext.service is per app: outside an app context it raises, inside it is the app's."""
    app = host_app(tmp_path)
    db = SQLAlchemy(app)
    dispose((app, db))
    ext = SMTPSenders(db=db)
    ext.init_app(app)
    with pytest.raises(RuntimeError):
        _ = ext.service
    with app.app_context():
        assert ext.service is app.extensions["smtp_senders"]


def test_get_service_of_app_without_init_raises(tmp_path) -> None:
    """An app that never ran init_app has no service, and says so."""
    with pytest.raises(RuntimeError, match="init_app"):
        get_service(host_app(tmp_path))


# -- replacing the store -----------------------------------------------------------------


class StorePlugin:
    """A host plugin that hands the extension its own store."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.calls: list[tuple[Flask, object]] = []

    @hookimpl
    def smtp_senders_store(self, app: Flask, db: object) -> MemoryStore:
        self.calls.append((app, db))
        return self.store


def sql_table_exists(app: Flask) -> bool:
    with app.app_context():
        return inspect(app.extensions["sqlalchemy"].engine).has_table("smtp_senders")


def test_memory_store_satisfies_the_store_protocol() -> None:
    """The test double is a SenderStore, as the runtime-checkable protocol sees it."""
    assert isinstance(MemoryStore(), SenderStore)


def test_store_hook_replaces_the_sql_store(make_app) -> None:
    """A plugin's smtp_senders_store wins over the built-in: every operation goes to it."""
    memory = MemoryStore()
    plugin = StorePlugin(memory)
    app = make_app(plugins=[plugin])
    assert len(plugin.calls) == 1
    assert plugin.calls[0][0] is app
    assert plugin.calls[0][1] is app.extensions["sqlalchemy"]

    with app.app_context():
        service = get_service(app)
        assert service.store is memory
        created = service.create_sender(settings(), PASSWORD)
        assert list(memory.rows) == [created.id]
        assert service.list_senders() == [created]
        updated = service.update_sender(created.id, created.version,
                                        settings(from_name="Edited"), PASSWORD)
        assert memory.rows[created.id] == updated
        with pytest.raises(ConcurrentUpdate):
            service.update_sender(created.id, created.version, settings(), PASSWORD)
        assert service.rotate_keys() == (1, 0)
        assert service.cipher.decrypt(memory.rows[created.id].password).reveal() == PASSWORD
    assert {"add", "list", "update", "reencrypt"} <= set(memory.calls)
    assert not sql_table_exists(app)


def test_store_argument_wins_over_the_store_hook(make_app) -> None:
    """store= given to SMTPSenders is used; the hook is not even asked."""
    direct, hooked = MemoryStore(), MemoryStore()
    plugin = StorePlugin(hooked)
    app = make_app(store=direct, plugins=[plugin])
    assert plugin.calls == []
    with app.app_context():
        service = get_service(app)
        assert service.store is direct
        created = service.create_sender(settings(), PASSWORD)
        assert service.list_senders() == [created]
    assert list(direct.rows) == [created.id]
    assert hooked.rows == {} and hooked.calls == []
    assert not sql_table_exists(app)


def test_default_store_is_sql_and_creates_its_table(make_app) -> None:
    """Without a replacement the SQLAlchemy store is used and its table exists."""
    app = make_app()
    assert isinstance(get_service(app).store, SQLAlchemyStore)
    assert sql_table_exists(app)


def test_init_app_before_db_init_app_says_which_order_is_needed(tmp_path, dispose) -> None:
    """The host's SQLAlchemy object must know the app first; said at start-up in words
    (Flask-SQLAlchemy's own error would come later, at first use, naming neither)."""
    app = host_app(tmp_path, SMTP_SENDERS_CREATE_TABLES=True)
    db = SQLAlchemy()
    with pytest.raises(ConfigurationError, match=r"call db\.init_app\(app\).*before"):
        SMTPSenders(app, db=db)
    assert "smtp_senders" not in app.extensions
    db.init_app(app)  # the order the message asks for works
    dispose((app, db))
    SMTPSenders(app, db=db)
    with app.app_context():
        assert get_service(app).list_senders() == []

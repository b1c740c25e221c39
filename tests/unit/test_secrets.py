"""Secrets only from the environment: secret keys in the file refused, `_env` keys resolved, URLs shown without passwords."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import certifi
import pytest
from aiokafka import AIOKafkaConsumer

from shadowd.adapters.database_url import DatabaseUrlError, engine_target
from shadowd.adapters.kafka import KafkaClientOptionError, client_options, make_consumer
from shadowd.config import ConfigError, KafkaConfig, Settings, load_config
from shadowd.credentials import is_secret_key, redact_url

BASE = """
models:
  base_url: http://127.0.0.1:9999
rollouts:
  - name: opus-4-7
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
"""


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "shadowd.yaml"
    path.write_text(BASE + extra)
    return path


@pytest.mark.parametrize(
    ("extra", "key", "env_form"),
    [
        ("kafka:\n  client:\n    sasl_plain_password: hunter2\n", "kafka.client.sasl_plain_password",
         "sasl_plain_password_env: NAME_OF_ENV_VAR"),
        ("kafka:\n  client:\n    consumer:\n      ssl_password: hunter2\n", "kafka.client.consumer.ssl_password",
         "ssl_password_env: NAME_OF_ENV_VAR"),
        ("kafka:\n  client:\n    producer:\n      sasl_plain_password: hunter2\n",
         "kafka.client.producer.sasl_plain_password", "sasl_plain_password_env: NAME_OF_ENV_VAR"),
        ("password: hunter2\n", "password", "password_env: NAME_OF_ENV_VAR"),
        ("api_key: sk-ant-hunter2\n", "api_key", "api_key_env: NAME_OF_ENV_VAR"),
        ("token: hunter2\n", "token", "token_env: NAME_OF_ENV_VAR"),
        ("kafka:\n  client:\n    sasl_oauth_token: hunter2\n", "kafka.client.sasl_oauth_token",
         "sasl_oauth_token_env: NAME_OF_ENV_VAR"),
    ],
)
def test_secret_keys_in_the_file_are_refused_naming_key_file_and_env_form(
    tmp_path: Path, extra: str, key: str, env_form: str
) -> None:
    """A secret-looking key anywhere in the YAML stops loading with the key, the file and the `_env` form to use."""
    path = write(tmp_path, extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path, Settings())
    message = str(caught.value)
    assert caught.value.key == key
    assert str(path) in message and env_form in message
    assert "hunter2" not in message


def test_secret_key_under_a_models_entry_is_refused(tmp_path: Path) -> None:
    """`models.api_key` (the key itself, instead of `api_key_env`) is refused before any unknown-key check."""
    path = tmp_path / "shadowd.yaml"
    path.write_text(BASE.replace("  base_url: http://127.0.0.1:9999", "  base_url: http://x\n  api_key: sk-ant-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, Settings())
    assert caught.value.key == "models.api_key" and "api_key_env: NAME_OF_ENV_VAR" in str(caught.value)


def test_env_forms_route_names_and_token_counts_are_not_secrets(tmp_path: Path) -> None:
    """Near misses load: `*_env` keys, a route named like a secret, and profile fields about tokens."""
    extra = """
kafka:
  client:
    sasl_plain_password_env: KAFKA_PASSWORD
    consumer:
      ssl_password_env: KAFKA_KEY_PASSWORD
routes:
  password-reset:
    ignore_paths: ["$.token"]
  api_key:
    ignore_paths: []
"""
    path = write(tmp_path, extra)
    path.write_text(path.read_text().replace(
        "models:\n", "models:\n  api_key_env: MY_KEY\n  profiles:\n    claude-opus-4-7: {max_output_tokens: 1000}\n"
    ))
    config = load_config(path, Settings())
    assert config.kafka.client["sasl_plain_password_env"] == "KAFKA_PASSWORD"
    assert config.models.api_key_env == "MY_KEY"
    assert config.profiles["claude-opus-4-7"].max_output_tokens == 1000


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("sasl_plain_password", True), ("ssl_password", True), ("apiKey", True), ("private_key", True),
        ("client-secret", True), ("admin_token", True), ("passphrase", True),
        ("sasl_plain_password_env", False), ("max_tokens", False), ("max_output_tokens", False),
        ("ssl_keyfile", False), ("tokenizer", False), ("usd_per_mtok_input", False), ("key", False),
    ],
)
def test_secret_key_names(key: str, secret: bool) -> None:
    """The secret-key rule: words like password/token/secret or pairs like api+key; `_env` keys and counts never."""
    assert is_secret_key(key) is secret


def test_env_form_reads_the_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sasl_plain_password_env: VAR` becomes `sasl_plain_password` with the variable's value, for both roles."""
    monkeypatch.setenv("TEST_KAFKA_PASSWORD", "s3cret")
    kafka = KafkaConfig(client={
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_plain_username": "svc",
        "sasl_plain_password_env": "TEST_KAFKA_PASSWORD",
    })
    for role in ("consumer", "producer"):
        options = client_options(kafka, role)
        assert options["sasl_plain_password"] == "s3cret"
        assert "sasl_plain_password_env" not in options


def test_missing_env_variable_names_the_key_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An `_env` key whose variable is unset stops with the key and the variable's name."""
    monkeypatch.delenv("TEST_KAFKA_UNSET", raising=False)
    kafka = KafkaConfig(client={"sasl_plain_password_env": "TEST_KAFKA_UNSET"})
    with pytest.raises(KafkaClientOptionError, match=r"kafka\.client\.sasl_plain_password_env: .*TEST_KAFKA_UNSET"):
        client_options(kafka, "consumer")


async def test_ssl_password_under_consumer_builds_a_tls_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`consumer: {ssl_password_env: VAR}` with an encrypted client key gives an SSLContext and a consumer, no TypeError."""
    cert, key = _encrypted_client_pair(tmp_path, "k3y-pass")
    monkeypatch.setenv("TEST_KAFKA_KEY_PASSWORD", "k3y-pass")
    kafka = KafkaConfig(client={
        "security_protocol": "SSL", "ssl_cafile": certifi.where(),
        "consumer": {"ssl_certfile": str(cert), "ssl_keyfile": str(key), "ssl_password_env": "TEST_KAFKA_KEY_PASSWORD"},
    })
    options = client_options(kafka, "consumer")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert not any(k.startswith("ssl_") and k != "ssl_context" for k in options)
    assert isinstance(make_consumer(kafka, max_records=10), AIOKafkaConsumer)  # every keyword argument accepted
    # Near miss: the same key with the wrong password is refused with the reason, not the password.
    monkeypatch.setenv("TEST_KAFKA_KEY_PASSWORD", "wrong-pass")
    with pytest.raises(KafkaClientOptionError) as caught:
        client_options(kafka, "consumer")
    assert "wrong-pass" not in str(caught.value)


@pytest.mark.parametrize(
    ("client", "words"),
    [
        ({"ssl_password": "x"}, "ssl_password_env"),
        ({"consumer": {"max_poll_recordz": 5}}, "kafka.client.consumer.max_poll_recordz"),
        ({"max_poll_records": 5}, "put it under kafka.client.consumer"),
        ({"consumer": {"ssl_password_env": ""}}, "must name an environment variable"),
        ({"ssl_cafile": "/nonexistent/ca.pem"}, "does not exist"),
    ],
)
def test_bad_client_options_are_named(client: dict[str, object], words: str) -> None:
    """Unknown, misplaced, literal-secret and missing-file options stop with the key, never a TypeError."""
    with pytest.raises(KafkaClientOptionError, match=words.replace(".", r"\.")):
        client_options(KafkaConfig(client=client), "consumer")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://svc:hunter2@db:5432/shadowd", "postgresql://svc:***@db:5432/shadowd"),
        ("postgresql+asyncpg://svc:p@ss/w@rd@db/x", "postgresql+asyncpg://svc:***@db/x"),
        ("postgresql://db/x?sslmode=require&sslpassword=hunter2", "postgresql://db/x?sslmode=require&sslpassword=***"),
        ("postgresql://svc@db/x", "postgresql://svc@db/x"),
        ("sqlite:///shadowd.db", "sqlite:///shadowd.db"),
    ],
)
def test_redact_url_hides_passwords(url: str, shown: str) -> None:
    """Passwords in userinfo (even with an unescaped @) and in the query are masked; the rest stays readable."""
    assert redact_url(url) == shown


def test_sslmode_maps_to_asyncpg_tls() -> None:
    """libpq's sslmode values become asyncpg's `ssl=` with libpq's meaning; the libpq keys leave the URL."""
    ca = certifi.where()
    require = engine_target("postgresql://u:p@db/x?sslmode=require")
    context = require.connect_args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert "sslmode" not in require.url.query and require.url.drivername == "postgresql+asyncpg"

    full = engine_target(f"postgresql://u:p@db/x?sslmode=verify-full&sslrootcert={ca}")
    context = full.connect_args["ssl"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert set(full.url.query) == set()

    verify_ca = engine_target(f"postgresql://db/x?sslmode=verify-ca&sslrootcert={ca}").connect_args["ssl"]
    assert verify_ca.verify_mode == ssl.CERT_REQUIRED and not verify_ca.check_hostname
    # libpq: `require` with a root certificate checks the CA.
    require_ca = engine_target(f"postgresql://db/x?sslmode=require&sslrootcert={ca}").connect_args["ssl"]
    assert require_ca.verify_mode == ssl.CERT_REQUIRED and not require_ca.check_hostname

    assert engine_target("postgresql://db/x?sslmode=disable").connect_args == {"ssl": False}
    assert engine_target("postgresql://db/x?sslmode=prefer").connect_args == {"ssl": "prefer"}
    # asyncpg's own `ssl=` keeps working untouched, and a URL without TLS keys gets no connect arguments.
    native = engine_target("postgresql+asyncpg://db/x?ssl=require")
    assert native.connect_args == {} and native.url.query == {"ssl": "require"}
    assert engine_target("sqlite:///x.db").connect_args == {}


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://svc:hunter2@db/x?sslmode=bogus", "sslmode='bogus'"),
        ("postgresql://svc:hunter2@db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", "no such file"),
        ("postgresql://svc:hunter2@db/x?sslmode=require&ssl=true", "both ssl= and sslmode="),
        ("postgresql://svc:hunter2@db/x?sslmode=require&sslmode=disable", "more than once"),
        ("postgresql://svc:hunter2@db:notaport/x", "not a database URL"),
    ],
)
def test_bad_database_urls_are_named_without_the_password(url: str, words: str) -> None:
    """A database URL shadowd cannot use raises DatabaseUrlError naming the problem, never the password."""
    with pytest.raises(DatabaseUrlError) as caught:
        engine_target(url)
    assert words in str(caught.value) and "hunter2" not in str(caught.value)


def test_cli_refuses_a_bad_database_url_without_printing_the_password(tmp_path: Path) -> None:
    """`shadowd db upgrade` with a bad sslmode exits 2 naming --db and sslmode, and prints no password."""
    done = subprocess.run(
        [sys.executable, "-m", "shadowd", "db", "upgrade", "--db", "postgresql://svc:hunter2@127.0.0.1:1/x?sslmode=on"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "--db" in done.stderr and "sslmode='on'" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr


def _encrypted_client_pair(folder: Path, password: str) -> tuple[Path, Path]:
    """A self-signed certificate and its key encrypted with `password`, made by openssl."""
    key, cert = folder / "client.key", folder / "client.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=shadowd-test",
         "-passout", f"pass:{password}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key

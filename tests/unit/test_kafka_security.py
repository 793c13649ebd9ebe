"""Kafka security settings: read from the environment or files, handed to every client
library the same way, never shown in a repr, a log line or an error message."""

from __future__ import annotations

import ast
import logging
import pickle
import re
import socket
import ssl
from pathlib import Path

import pytest

from civicstream.settings import ConfigError, Settings
from kafkaconf import KafkaSecurity, KafkaSecurityError, Secret, check_login

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Pa55word"


@pytest.fixture
def cafile(localkafka, tmp_path: Path) -> str:
    """A test CA (PEM), made like the SASL_SSL test broker's."""
    return str(localkafka.ensure_tls(tmp_path).ca_file)


@pytest.fixture
def sasl_env(cafile: str) -> dict[str, str]:
    return {
        "CIVIC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CIVIC_KAFKA_SASL_USERNAME": "civic-sink",
        "CIVIC_KAFKA_SASL_PASSWORD": PASSWORD,
        "CIVIC_KAFKA_SSL_CAFILE": cafile,
    }


def test_without_settings_clients_connect_in_plaintext() -> None:
    security = KafkaSecurity.from_env({})
    assert security.protocol == "PLAINTEXT"
    assert security.kafka_python() == {"security_protocol": "PLAINTEXT"}
    assert security.ssl_context() is None


def test_sasl_ssl_gives_every_client_library_the_login_and_a_verifying_tls_context(
    sasl_env: dict[str, str],
) -> None:
    security = KafkaSecurity.from_env(sasl_env)
    for options in (security.kafka_python(), security.aiokafka()):
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert options["sasl_plain_username"] == "civic-sink"
        assert options["sasl_plain_password"] == PASSWORD
        context = options["ssl_context"]
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_faust_gets_the_same_settings_as_its_broker_credentials(sasl_env: dict[str, str]) -> None:
    from streams.app import broker_credentials

    credentials = broker_credentials(KafkaSecurity.from_env(sasl_env))
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("civic-sink", PASSWORD)
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert PASSWORD not in repr(credentials)
    assert broker_credentials(KafkaSecurity()) is None


def test_the_password_may_come_from_a_file_without_its_final_newline(
    sasl_env: dict[str, str], tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    env = {
        **sasl_env,
        "CIVIC_KAFKA_SASL_PASSWORD": "",
        "CIVIC_KAFKA_SASL_PASSWORD_FILE": str(secret),
    }
    assert KafkaSecurity.from_env(env).kafka_python()["sasl_plain_password"] == PASSWORD


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"CIVIC_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/password"}, "not both"),
        ({"CIVIC_KAFKA_SASL_PASSWORD": "", "CIVIC_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"},
         "CIVIC_KAFKA_SASL_PASSWORD_FILE='/nonexistent/pw' cannot be read"),
        ({"CIVIC_KAFKA_SASL_USERNAME": ""}, "needs CIVIC_KAFKA_SASL_USERNAME"),
        ({"CIVIC_KAFKA_SASL_PASSWORD": ""}, "needs CIVIC_KAFKA_SASL_USERNAME and"),
        ({"CIVIC_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "CIVIC_KAFKA_SSL_CAFILE": ""},
         "SASL credentials are set but CIVIC_KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
        ({"CIVIC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "TLS files are set"),
        ({"CIVIC_KAFKA_SECURITY_PROTOCOL": "TLS"}, "is not one of PLAINTEXT, SSL"),
        ({"CIVIC_KAFKA_SASL_MECHANISM": "GSSAPI"}, "is not one of SCRAM-SHA-512"),
        ({"CIVIC_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "is not a readable file"),
        ({"CIVIC_KAFKA_SSL_CAFILE": __file__}, "not usable PEM certificates"),
        ({"CIVIC_KAFKA_SSL_CERTFILE": __file__}, "set both or neither"),
    ],
)  # fmt: skip
def test_settings_that_cannot_work_are_refused_naming_the_variable(
    sasl_env: dict[str, str], change: dict[str, str], message: str
) -> None:
    with pytest.raises(KafkaSecurityError, match=re.escape(message)):
        KafkaSecurity.from_env({**sasl_env, **change})


def test_a_process_with_unusable_kafka_settings_stops_at_start_with_a_configuration_error(
    sasl_env: dict[str, str],
) -> None:
    with pytest.raises(ConfigError, match="CIVIC_KAFKA_SASL_USERNAME"):
        Settings.from_env({**sasl_env, "CIVIC_KAFKA_SASL_USERNAME": ""})


def test_the_password_never_shows_in_a_repr_a_string_a_log_line_or_a_pickle(
    sasl_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    security = KafkaSecurity.from_env(sasl_env)
    settings = Settings.from_env(sasl_env)
    shown = [
        repr(security),
        str(security),
        security.describe(),
        f"{security.password}",
        f"{security.password!r}",
        repr(settings),
        str(vars(security)),
    ]
    logging.getLogger("civicstream.test").warning("settings %s %r", security, settings)
    shown.append(caplog.text)
    for text in shown:
        assert PASSWORD not in text
    assert "civic-sink" in security.describe()
    assert repr(Secret(PASSWORD)) == "Secret('***')"
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(security)


def test_the_login_check_reports_a_broker_that_is_not_there_as_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", username="u", password=Secret("p"))
    with pytest.raises(ConnectionRefusedError):
        check_login(f"127.0.0.1:{port}", security, timeout=1.0)


# --- every Kafka client the project makes gets the settings -------------------------------

CLIENTS = {
    "KafkaConsumer",
    "KafkaProducer",
    "KafkaAdminClient",
    "AIOKafkaConsumer",
    "AIOKafkaProducer",
    "AIOKafkaAdminClient",
    "AIOKafkaClient",
}
SOURCES = [
    path
    for package in ("civicstream", "streams", "sinks", "bench", "telemetry", "kafkaconf")
    for path in sorted((ROOT / package).rglob("*.py"))
] + [ROOT / "tests" / "integration" / "harness.py"]


def _name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return f"{func.value.id}.{func.attr}" if isinstance(func.value, ast.Name) else func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _passes_security(call: ast.Call) -> bool:
    """A `**<...>.kafka_python()` / `**<...>.aiokafka()` argument, or Faust's
    `broker_credentials=`."""
    for keyword in call.keywords:
        if keyword.arg == "broker_credentials":
            return True
        value = keyword.value
        if (
            keyword.arg is None
            and isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr in ("kafka_python", "aiokafka")
        ):
            return True
    return False


def test_every_kafka_client_the_project_makes_gets_the_security_settings() -> None:
    made = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and (
                _name(node).split(".")[-1] in CLIENTS or _name(node) == "faust.App"
            ):
                made.append((f"{path.relative_to(ROOT)}:{node.lineno}", _passes_security(node)))
    assert len(made) >= 14
    assert [where for where, ok in made if not ok] == []


def test_the_client_check_tells_a_client_without_the_settings() -> None:
    bare, configured, faust_app = (
        ast.parse(code).body[0].value  # type: ignore[attr-defined]
        for code in (
            "KafkaConsumer(bootstrap_servers=b, group_id=g)",
            "KafkaConsumer(bootstrap_servers=b, **security.kafka_python())",
            "faust.App('id', broker=b, broker_credentials=c)",
        )
    )
    assert not _passes_security(bare)
    assert _passes_security(configured)
    assert _passes_security(faust_app)

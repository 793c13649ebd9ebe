"""The local broker's SASL_SSL set-up, without starting a JVM: the test CA and the broker's
certificate work for a TLS client that checks the hostname, and the broker's only
client listener is SASL_SSL with SCRAM-SHA-512."""

from __future__ import annotations

import contextlib
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest

from kafkaconf import KafkaSecurity, Secret


def _serve_tls_once(keystore: Path) -> tuple[int, threading.Thread]:
    """A TLS server on 127.0.0.1 with the broker's key and certificate, for one handshake."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(keystore)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        # a client that refuses the certificate ends the handshake: no error of ours
        with (
            listener,
            server.wrap_socket(listener, server_side=True) as tls,
            contextlib.suppress(OSError),
        ):
            connection, _ = tls.accept()
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return port, thread


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_clients_that_trust_the_test_ca_verify_the_broker_certificate(
    localkafka, tmp_path: Path, hostname: str
) -> None:
    files = localkafka.ensure_tls(tmp_path)
    port, thread = _serve_tls_once(files.broker_keystore)
    security = KafkaSecurity(
        protocol="SASL_SSL", username="u", password=Secret("p"), cafile=str(files.ca_file)
    )
    context = security.ssl_context()
    assert context is not None
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    thread.join(5)


def test_a_client_without_the_test_ca_refuses_the_broker(localkafka, tmp_path: Path) -> None:
    files = localkafka.ensure_tls(tmp_path)
    port, thread = _serve_tls_once(files.broker_keystore)
    context = ssl.create_default_context()  # the system's CAs only
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")
    thread.join(5)


def test_the_tls_material_is_made_once_and_its_keys_are_private(localkafka, tmp_path) -> None:
    first = localkafka.ensure_tls(tmp_path)
    ca = first.ca_file.read_bytes()
    assert localkafka.ensure_tls(tmp_path) == first
    assert first.ca_file.read_bytes() == ca  # not regenerated
    for key in (tmp_path / "tls" / "ca.key", first.broker_keystore):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_sasl_ssl_broker_has_no_plaintext_client_listener(localkafka, tmp_path) -> None:
    localkafka._save_users(tmp_path, {"admin": "broker-secret"})
    properties = localkafka.server_properties(tmp_path, 29094, 29095, sasl_ssl=True)
    assert properties["listeners"] == "SASL_SSL://127.0.0.1:29094,CONTROLLER://127.0.0.1:29095"
    assert properties["advertised.listeners"] == "SASL_SSL://127.0.0.1:29094"
    assert properties["inter.broker.listener.name"] == "SASL_SSL"
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert properties["ssl.endpoint.identification.algorithm"] == "https"
    assert (
        'password="broker-secret"'
        in properties["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )
    client_env = localkafka.BrokerHandle(
        tmp_path, 29094, 29095, 1, security_protocol="SASL_SSL"
    ).client_env("civic-sink")
    assert client_env["CIVIC_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert client_env["CIVIC_KAFKA_SASL_PASSWORD_FILE"].endswith("sasl/civic-sink.password")
    assert "broker-secret" not in str(client_env)

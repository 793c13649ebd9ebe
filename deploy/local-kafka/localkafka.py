#!/usr/bin/env python3
"""Run a local single-node Apache Kafka broker (KRaft mode) from the jars on Maven Central.

No Docker and no Kafka tarball: Maven copies ``kafka_2.13`` and its runtime dependencies
(see ``pom.xml``) into ``libs/`` once, and the broker runs as ``java -cp 'libs/*' kafka.Kafka``.
Standard library only, because this runs before any virtualenv exists.

As a module (the test suite loads it by file path)::

    broker = start(data_dir, free_port(), free_port())
    broker.bootstrap        # "127.0.0.1:PORT"
    broker.stop()           # SIGTERM (controlled shutdown), SIGKILL after the grace period
    broker.kill()           # SIGKILL, for crash tests

As a CLI::

    python deploy/local-kafka/localkafka.py up [--port 9092] [--controller-port 9093]
    python deploy/local-kafka/localkafka.py up --sasl-ssl --port 9094 --data-dir .kafka-sasl
    python deploy/local-kafka/localkafka.py status | down | jars

``start(..., sasl_users={"name": "password"})`` (or ``up --sasl-ssl``) starts a broker whose
only client listener is SASL_SSL with SCRAM-SHA-512: a test CA and the broker's
certificate are made with ``openssl`` in ``<data-dir>/tls/`` (``ca.pem`` is what clients
trust), and the SCRAM users are created when the log dir is formatted (plus ``admin``,
the broker's own user). The controller listener stays PLAINTEXT on 127.0.0.1: KRaft
controllers cannot use SCRAM (its credentials live in the metadata they serve).

Everything of one broker lives in its data dir: ``server.properties``, the Kafka log dir
(``kraft-logs/``), the broker's own log (``server.log``), the JVM's console output
(``console.log``) and the pid/port record (``broker.pid``, ``broker.json``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent.parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"
LIBS = HERE / "libs"
JARS_STAMP = LIBS / ".complete.json"

DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_DATA_DIR = PROJECT_ROOT / ".kafka"
DEFAULT_HEAP = "512m"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

HOST = "127.0.0.1"
NODE_ID = 1
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
STARTED_MARKER = "Kafka Server started"

PROPERTIES_FILE = "server.properties"
KAFKA_LOG_DIR = "kraft-logs"
SERVER_LOG = "server.log"
CONSOLE_LOG = "console.log"
PID_FILE = "broker.pid"
STATE_FILE = "broker.json"
LOCK_FILE = ".localkafka.lock"
TLS_DIR = "tls"
SASL_DIR = "sasl"
CA_FILE = "ca.pem"
SCRAM_MECHANISM = "SCRAM-SHA-512"
BROKER_USER = "admin"  # the broker's own SCRAM user (inter-broker listener)
CLI_USER = "civicstream"  # the client user `up --sasl-ssl` creates
CERT_DAYS = 825

# Kafka protocol: API keys and the request versions used by the readiness probe.
_API_METADATA = 3
_API_SASL_HANDSHAKE = 17
_API_VERSIONS = 18
_API_SASL_AUTHENTICATE = 36
_METADATA_VERSION = 4  # non-flexible; supported by Kafka 2.x … 4.x
_CLIENT_ID = b"civicstream-localkafka"

_PR_SET_PDEATHSIG = 1


class LocalKafkaError(RuntimeError):
    """Anything that keeps the local broker from starting, answering or stopping."""


class KafkaProtocolError(LocalKafkaError):
    """The peer answered, but not like a ready Kafka broker."""


class BrokerInfo(NamedTuple):
    node_id: int
    host: str
    port: int


def _say(message: str) -> None:
    print(f"localkafka: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tools and jars


def _require(tool: str, debian_package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        msg = (
            f"`{tool}` is not on PATH. Install it, e.g. on Debian/Ubuntu: "
            f"apt-get install -y {debian_package} (or run `make kafka-up`, which does that)."
        )
        raise LocalKafkaError(msg)
    return path


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return _require("java", "openjdk-17-jre-headless")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) held for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _jars_complete(digest: str) -> bool:
    try:
        stamp = json.loads(JARS_STAMP.read_text())
    except (FileNotFoundError, ValueError):
        return False
    jars = stamp.get("jars") or []
    return stamp.get("pom_sha256") == digest and all((LIBS / jar).is_file() for jar in jars)


def _tail(path: Path, lines: int = 40, *, offset: int = 0) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def ensure_jars() -> Path:
    """Copy the broker's classpath into ``libs/`` unless it is already there; return ``libs/``.

    A stamp file keyed on the pom's SHA-256 is written after a successful copy, so a second
    call downloads nothing (and costs a file read). Safe against concurrent callers.
    """
    digest = _pom_digest()
    if _jars_complete(digest):
        return LIBS
    with _locked(LIBS / ".lock"):
        if _jars_complete(digest):  # another process fetched them while we waited
            return LIBS
        mvn = _require("mvn", "maven")
        _java()
        JARS_STAMP.unlink(missing_ok=True)
        for old in LIBS.glob("*.jar"):
            old.unlink()
        mvn_log = LIBS / "mvn.log"
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={LIBS}",
        ]
        _say(f"fetching the Kafka broker jars with Maven into {LIBS} (first run only) ...")
        began = time.monotonic()
        with mvn_log.open("w") as out:
            code = subprocess.run(
                command, cwd=HERE, stdout=out, stderr=subprocess.STDOUT, check=False
            ).returncode
        elapsed = time.monotonic() - began
        jars = sorted(jar.name for jar in LIBS.glob("*.jar"))
        if code != 0 or not jars:
            msg = (
                f"Maven could not fetch the Kafka jars (exit code {code}) after {elapsed:.1f} s. "
                f"Command: {' '.join(command)}\n--- {mvn_log} ---\n{_tail(mvn_log)}"
            )
            raise LocalKafkaError(msg)
        size = sum((LIBS / jar).stat().st_size for jar in jars)
        JARS_STAMP.write_text(
            json.dumps({"pom_sha256": digest, "jars": jars, "bytes": size}, indent=1) + "\n"
        )
        _say(f"fetched {len(jars)} jars ({size / 1e6:.1f} MB) in {elapsed:.1f} s")
    return LIBS


# --------------------------------------------------------------------------- configuration


def new_cluster_id() -> str:
    """A KRaft cluster id: URL-safe base64 of a random UUID, unpadded, not starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(
    data_dir: Path, port: int, controller_port: int, *, sasl_ssl: bool = False
) -> dict[str, str]:
    """The single-node KRaft configuration (combined broker + controller, node 1).

    With `sasl_ssl` the client (and inter-broker) listener is SASL_SSL with SCRAM-SHA-512,
    using the TLS files of `ensure_tls` and the broker user's password in the data dir.
    """
    listener = "SASL_SSL" if sasl_ssl else "PLAINTEXT"
    properties = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{controller_port}",
        "listeners": f"{listener}://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"{listener}://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": listener,
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{listener}:{listener}",
        "log.dirs": str(data_dir / KAFKA_LOG_DIR),
        # One node: every internal topic has replication factor 1 and min ISR 1.
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "4",
        # Topics: auto-creation stays on (1 partition) for ad-hoc tools; project code and
        # tests declare their topics explicitly with the partition count they need.
        "auto.create.topics.enable": "true",
        "num.partitions": "1",
        # Consumer groups form at once instead of after the default 3 s delay.
        "group.initial.rebalance.delay.ms": "0",
        # Faust changelogs are compacted, so the cleaner stays on, with a 16 MiB buffer
        # instead of the 128 MiB it would allocate from the heap by default.
        "log.cleaner.enable": "true",
        "log.cleaner.dedupe.buffer.size": "16777216",
        "num.recovery.threads.per.data.dir": "1",
        # After a crash (SIGKILL) the restarted controller still holds the dead incarnation's
        # registration and unfences the new one only when that session expires: 9 s by
        # default, 4 s here, which keeps crash/restart tests short.
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "4000",
    }
    if sasl_ssl:
        tls = data_dir / TLS_DIR
        password = _user_password(data_dir, BROKER_USER)
        properties |= {
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{BROKER_USER}" password="{password}";'
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(tls / "broker.pem"),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls / CA_FILE),
            "ssl.client.auth": "none",
            "ssl.endpoint.identification.algorithm": "https",
        }
    return properties


def _write_properties(path: Path, properties: dict[str, str]) -> None:
    lines = ["# Written by deploy/local-kafka/localkafka.py at every start; edits are lost."]
    lines += [f"{key}={value}" for key, value in properties.items()]
    path.touch(mode=0o600)  # it may hold the broker user's password
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- TLS and SASL


@dataclass(frozen=True)
class TlsFiles:
    """The test CA and the broker's certificate, made by `ensure_tls`."""

    ca_file: Path
    """The CA certificate (PEM): what clients trust."""
    broker_keystore: Path
    """The broker's key (PKCS#8) and certificate chain, one PEM file (Kafka's PEM keystore)."""


def _openssl(*args: str, cwd: Path) -> None:
    openssl = _require("openssl", "openssl")
    result = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"openssl {' '.join(args[:2])} failed:\n{result.stdout}{result.stderr}"
        raise LocalKafkaError(msg)


def ensure_tls(data_dir: Path, days: int = CERT_DAYS) -> TlsFiles:
    """A test CA and a broker certificate for 127.0.0.1 and localhost, signed by it, in
    ``<data-dir>/tls/`` (made once with openssl; EC P-256 keys, unencrypted, mode 600).

    Made here rather than committed: a CA key in a repository would be a CA anyone trusts.
    """
    tls = data_dir / TLS_DIR
    files = TlsFiles(tls / CA_FILE, tls / "broker.pem")
    if files.ca_file.is_file() and files.broker_keystore.is_file():
        return files
    tls.mkdir(parents=True, exist_ok=True)
    os.chmod(tls, 0o700)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", CA_FILE, "-days", str(days),
        "-subj", "/CN=civicstream local test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=tls,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=localhost", cwd=tls
    )
    (tls / "broker.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        f"subjectAltName=IP:{HOST},DNS:localhost\n"
    )
    _openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", CA_FILE, "-CAkey", "ca.key",
        "-set_serial", str(secrets.randbits(63)), "-days", str(days),
        "-extfile", "broker.ext", "-out", "broker.crt",
        cwd=tls,
    )  # fmt: skip
    keystore = (tls / "broker.key").read_text() + (tls / "broker.crt").read_text()
    keystore += files.ca_file.read_text()
    files.broker_keystore.write_text(keystore)
    for path in tls.iterdir():
        path.chmod(0o600 if path.suffix in (".key", ".pem") and path.name != CA_FILE else 0o644)
    return files


def _user_password(data_dir: Path, user: str) -> str:
    """The SCRAM password of `user` in this data dir (``sasl/<user>.password``)."""
    path = data_dir / SASL_DIR / f"{user}.password"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        msg = f"{data_dir} has no SASL user {user!r} ({path} is missing)"
        raise LocalKafkaError(msg) from None


def _save_users(data_dir: Path, users: Mapping[str, str]) -> None:
    """Keep each user's password in ``sasl/<user>.password`` (mode 600): the broker's own
    for its inter-broker login and the probe, the others for clients (a password file,
    as CIVIC_KAFKA_SASL_PASSWORD_FILE reads it)."""
    directory = data_dir / SASL_DIR
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for user, password in users.items():
        if not user or any(c in user + password for c in ",=[]\"' \n"):
            msg = f"SCRAM user {user!r}: names and passwords must not contain , = [ ] quotes"
            raise LocalKafkaError(msg)
        path = directory / f"{user}.password"
        path.touch(mode=0o600)
        path.write_text(password + "\n")


def _classpath() -> str:
    return f"{LIBS}/*"  # the JVM expands the wildcard itself


def _jvm_options(data_dir: Path, heap: str) -> list[str]:
    return [
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={data_dir}",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
    ]


def _format_storage(
    java: str, data_dir: Path, properties_path: Path, scram_users: Sequence[str] = ()
) -> None:
    """Format the KRaft log dir once; a formatted dir keeps its cluster id across restarts.

    `scram_users` (passwords from `_user_password`) are created in the cluster metadata
    at this point: with KRaft that is how the first SCRAM credentials come to exist.
    """
    if (data_dir / KAFKA_LOG_DIR / "meta.properties").is_file():
        return
    scram = []
    for user in scram_users:
        password = _user_password(data_dir, user)
        scram += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]"]
    # With controller.quorum.voters set, Kafka 4.1 rejects --standalone; format without it.
    command = [
        java,
        *_jvm_options(data_dir, "256m"),
        "-cp",
        _classpath(),
        STORAGE_TOOL,
        "format",
        "-t",
        new_cluster_id(),
        "-c",
        str(properties_path),
        *scram,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = f"{result.stdout}{result.stderr}"
        for user in scram_users:  # the tool may echo its arguments
            output = output.replace(_user_password(data_dir, user), "***")
        msg = (
            f"formatting {data_dir / KAFKA_LOG_DIR} failed (exit code {result.returncode}):\n"
            f"{output}"
        )
        raise LocalKafkaError(msg)


# --------------------------------------------------------------------------- protocol probe


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            msg = "connection closed by the broker"
            raise KafkaProtocolError(msg)
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _call(sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes) -> bytes:
    """Send one request (header v1) and return the response body (after header v0)."""
    header = struct.pack(">hhih", api_key, version, correlation, len(_CLIENT_ID)) + _CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    response = _recv_exact(sock, size)
    (answered,) = struct.unpack_from(">i", response)
    if answered != correlation:
        msg = f"correlation id mismatch: sent {correlation}, got {answered}"
        raise KafkaProtocolError(msg)
    return response[4:]


def _string(buffer: bytes, offset: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", buffer, offset)
    offset += 2
    if length < 0:
        return None, offset
    return buffer[offset : offset + length].decode(), offset + length


def _bytes_field(buffer: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">i", buffer, offset)
    offset += 4
    if length < 0:
        return b"", offset
    return buffer[offset : offset + length], offset + length


class SaslAuthenticationError(KafkaProtocolError):
    """The broker refused the SASL login (a wrong user or password)."""


def _scram_login(sock: socket.socket, user: str, password: str) -> None:
    """SaslHandshake v1 then SCRAM-SHA-512 (RFC 5802) in two SaslAuthenticate v0 rounds."""
    mechanism = SCRAM_MECHANISM.encode()
    body = _call(sock, _API_SASL_HANDSHAKE, 1, 3, struct.pack(">h", len(mechanism)) + mechanism)
    (error,) = struct.unpack_from(">h", body)
    if error:
        msg = f"the broker does not offer {SCRAM_MECHANISM} (SaslHandshake error {error})"
        raise KafkaProtocolError(msg)

    def authenticate(correlation: int, data: bytes) -> bytes:
        body = _call(
            sock, _API_SASL_AUTHENTICATE, 0, correlation, struct.pack(">i", len(data)) + data
        )
        (error,) = struct.unpack_from(">h", body)
        message, offset = _string(body, 2)
        if error:
            msg = f"SASL authentication as {user!r} failed: {message or f'error {error}'}"
            raise SaslAuthenticationError(msg)
        return _bytes_field(body, offset)[0]

    nonce = base64.b64encode(secrets.token_bytes(18)).decode()
    first_bare = f"n={user},r={nonce}"
    server_first = authenticate(4, f"n,,{first_bare}".encode()).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    if not fields.get("r", "").startswith(nonce):
        msg = "SCRAM: the server's nonce does not extend ours"
        raise KafkaProtocolError(msg)
    salted = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", "sha512")
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(hashlib.sha512(client_key).digest(), auth_message, "sha512")
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    server_final = authenticate(5, f"{without_proof},p={proof.decode()}".encode()).decode()
    server_key = hmac.digest(salted, b"Server Key", "sha512")
    expected = base64.b64encode(hmac.digest(server_key, auth_message, "sha512")).decode()
    if server_final != f"v={expected}":
        msg = "SCRAM: the server's signature does not match (not the broker we trust)"
        raise KafkaProtocolError(msg)


def kafka_brokers(
    host: str,
    port: int,
    *,
    timeout: float = 2.0,
    tls: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
) -> list[BrokerInfo]:
    """Ask a broker for the cluster's brokers: ApiVersions v0, then Metadata v4 (no topics).

    `tls` wraps the connection (the broker's certificate is checked with it); `login`
    (user, password) authenticates with SCRAM-SHA-512 before Metadata. Raises OSError
    when nothing accepts connections (ssl.SSLError when TLS fails) and KafkaProtocolError
    when the peer answers but not like a Kafka broker that serves requests
    (SaslAuthenticationError when it refuses the login).
    """
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
        if tls is not None:
            sock = stack.enter_context(tls.wrap_socket(sock, server_hostname=host))
        sock.settimeout(timeout)
        body = _call(sock, _API_VERSIONS, 0, 1, b"")
        error, count = struct.unpack_from(">hi", body)
        if error:
            msg = f"ApiVersions returned error code {error}"
            raise KafkaProtocolError(msg)
        versions: dict[int, tuple[int, int]] = {}
        for index in range(count):
            key, low, high = struct.unpack_from(">hhh", body, 6 + 6 * index)
            versions[key] = (low, high)
        low, high = versions.get(_API_METADATA, (-1, -1))
        if not low <= _METADATA_VERSION <= high:
            msg = f"broker does not accept Metadata v{_METADATA_VERSION} (range {low}..{high})"
            raise KafkaProtocolError(msg)
        if login is not None:
            _scram_login(sock, *login)
        # topics: empty array (= none, not all); allow_auto_topic_creation: false
        body = _call(sock, _API_METADATA, _METADATA_VERSION, 2, struct.pack(">i?", 0, False))
        (count,) = struct.unpack_from(">i", body, 4)  # after throttle_time_ms
        offset = 8
        brokers = []
        for _ in range(count):
            (node_id,) = struct.unpack_from(">i", body, offset)
            broker_host, offset = _string(body, offset + 4)
            (broker_port,) = struct.unpack_from(">i", body, offset)
            _rack, offset = _string(body, offset + 4)
            brokers.append(BrokerInfo(node_id, broker_host or "", broker_port))
        return brokers


def is_ready(port: int, host: str = HOST, *, timeout: float = 2.0) -> bool:
    """True when a Kafka broker on host:port serves Metadata and lists at least one broker."""
    try:
        return bool(kafka_brokers(host, port, timeout=timeout))
    except (OSError, LocalKafkaError):
        return False


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all held open at once while picking)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited child that nobody reaped yet is a zombie: it is gone for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _is_broker_process(pid: int, data_dir: Path) -> bool:
    """The pid is alive and is the kafka.Kafka JVM of this data dir (pids get reused)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    properties = str(data_dir / PROPERTIES_FILE).encode()
    return MAIN_CLASS.encode() in cmdline and properties in cmdline


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec hook that SIGKILLs the broker when the starting process dies (Linux).

    Used for brokers owned by a test session, so a killed pytest leaves no broker behind.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


@dataclass
class BrokerHandle:
    """A running local broker. ``process`` is set only in the process that started it."""

    data_dir: Path
    port: int
    controller_port: int
    pid: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    security_protocol: str = "PLAINTEXT"
    """``PLAINTEXT`` or ``SASL_SSL`` (SCRAM-SHA-512, the CA in `ca_file`)."""

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def ca_file(self) -> Path | None:
        """The CA certificate clients trust (SASL_SSL brokers only)."""
        return self.data_dir / TLS_DIR / CA_FILE if self.security_protocol == "SASL_SSL" else None

    def password_file(self, user: str) -> Path:
        """The file holding a SCRAM user's password (SASL_SSL brokers only)."""
        return self.data_dir / SASL_DIR / f"{user}.password"

    def client_env(self, user: str = CLI_USER) -> dict[str, str]:
        """The civicstream settings (CIVIC_KAFKA_*) a client uses to reach this broker."""
        env = {"CIVIC_KAFKA_BOOTSTRAP": self.bootstrap}
        if self.security_protocol == "SASL_SSL":
            env |= {
                "CIVIC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CIVIC_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
                "CIVIC_KAFKA_SASL_USERNAME": user,
                "CIVIC_KAFKA_SASL_PASSWORD_FILE": str(self.password_file(user)),
                "CIVIC_KAFKA_SSL_CAFILE": str(self.ca_file),
            }
        return env

    def probe_options(self) -> dict[str, Any]:
        """`kafka_brokers` options that reach this broker (TLS and the broker's own login)."""
        if self.security_protocol != "SASL_SSL":
            return {}
        tls = ssl.create_default_context(cafile=str(self.ca_file))
        return {"tls": tls, "login": (BROKER_USER, _user_password(self.data_dir, BROKER_USER))}

    @property
    def log_file(self) -> Path:
        return self.data_dir / SERVER_LOG

    def is_running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _is_broker_process(self.pid, self.data_dir)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Controlled shutdown (SIGTERM); SIGKILL if it is not gone after ``timeout`` s."""
        if self.is_running():
            self._signal(signal.SIGTERM)
            if not self._wait(timeout):
                _say(f"broker pid {self.pid} ignored SIGTERM for {timeout:.0f} s; killing it")
                self._signal(signal.SIGKILL)
                self._wait(10.0)
        self._forget()

    def kill(self) -> None:
        """SIGKILL, no shutdown at all: what a crash looks like to the data dir."""
        if self.is_running():
            self._signal(signal.SIGKILL)
            self._wait(10.0)
        self._forget()

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            # The broker leads its own process group (start_new_session); signal the group.
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)

    def _wait(self, timeout: float) -> bool:
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _forget(self) -> None:
        state = _read_state(self.data_dir)
        if state is None or state.get("pid") == self.pid:
            for name in (STATE_FILE, PID_FILE):
                (self.data_dir / name).unlink(missing_ok=True)


def _read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((data_dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state


def _write_state(handle: BrokerHandle, heap: str) -> None:
    state = {
        "pid": handle.pid,
        "port": handle.port,
        "controller_port": handle.controller_port,
        "bootstrap": handle.bootstrap,
        "security_protocol": handle.security_protocol,
        "heap": heap,
        "started_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
    }
    (handle.data_dir / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
    (handle.data_dir / PID_FILE).write_text(f"{handle.pid}\n")


def running_broker(data_dir: Path) -> BrokerHandle | None:
    """The broker recorded in ``data_dir`` if its process is still alive; clears stale records."""
    data_dir = Path(data_dir).resolve()
    state = _read_state(data_dir)
    if state is None:
        return None
    handle = BrokerHandle(
        data_dir,
        int(state["port"]),
        int(state["controller_port"]),
        int(state["pid"]),
        security_protocol=state.get("security_protocol", "PLAINTEXT"),
    )
    if handle.is_running():
        return handle
    handle._forget()
    return None


def _diagnostics(handle: BrokerHandle, log_offset: int) -> str:
    return (
        f"--- {handle.log_file} (tail) ---\n{_tail(handle.log_file, offset=log_offset)}\n"
        f"--- {handle.data_dir / CONSOLE_LOG} (tail) ---\n"
        f"{_tail(handle.data_dir / CONSOLE_LOG, 20)}"
    )


def wait_ready(
    handle: BrokerHandle, timeout: float = READY_TIMEOUT, *, log_offset: int = 0
) -> None:
    """Poll until the broker serves Metadata listing itself; raise with the log tail if not."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if not handle.is_running():
            code = handle.process.poll() if handle.process is not None else None
            msg = (
                f"the Kafka broker (pid {handle.pid}) exited during startup"
                f"{f' with code {code}' if code is not None else ''}.\n"
                f"{_diagnostics(handle, log_offset)}"
            )
            raise LocalKafkaError(msg)
        try:
            brokers = kafka_brokers(HOST, handle.port, timeout=1.0, **handle.probe_options())
        except (OSError, LocalKafkaError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if any(broker.node_id == NODE_ID for broker in brokers):
                return
            last = f"metadata lists brokers {brokers}, not node {NODE_ID}"
        if time.monotonic() > deadline:
            msg = (
                f"the Kafka broker on {handle.bootstrap} (pid {handle.pid}) was not ready "
                f"within {timeout:.0f} s; last probe: {last}.\n{_diagnostics(handle, log_offset)}"
            )
            raise LocalKafkaError(msg)
        time.sleep(0.1)


def _prepare_sasl(data_dir: Path, users: Mapping[str, str] | None) -> list[str]:
    """TLS files and SCRAM users for a SASL_SSL broker; returns the users to create.

    Users exist from the format of the log dir on: a data dir formatted without SASL
    (or with other users) cannot gain them later, so that is refused.
    """
    formatted = (data_dir / KAFKA_LOG_DIR / "meta.properties").is_file()
    marker = data_dir / SASL_DIR / "users.json"
    wanted = {BROKER_USER: secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")}
    wanted |= dict(users or {})
    if formatted:
        try:
            known = set(json.loads(marker.read_text()))
        except (FileNotFoundError, ValueError):
            known = set()
        if not known:
            msg = f"{data_dir} was formatted without SASL; use another --data-dir for SASL_SSL"
            raise LocalKafkaError(msg)
        missing = sorted(set(users or {}) - known)
        if missing:
            msg = f"{data_dir} has no SCRAM users {missing} (users are made at format time)"
            raise LocalKafkaError(msg)
        return []  # the passwords are those saved when the dir was formatted
    _save_users(data_dir, wanted)
    marker.write_text(json.dumps(sorted(wanted)) + "\n")
    ensure_tls(data_dir)
    return sorted(wanted)


def _start_unlocked(
    data_dir: Path,
    port: int,
    controller_port: int,
    heap: str,
    timeout: float,
    detach: bool,
    sasl_users: Mapping[str, str] | None = None,
) -> BrokerHandle:
    existing = running_broker(data_dir)
    if existing is not None:
        msg = (
            f"a broker from {data_dir} is already running (pid {existing.pid}, "
            f"{existing.bootstrap}); stop it first"
        )
        raise LocalKafkaError(msg)
    if port == controller_port:
        msg = f"port and controller port must differ (both {port})"
        raise LocalKafkaError(msg)
    for candidate in (port, controller_port):
        if _port_in_use(candidate):
            msg = f"port {candidate} on {HOST} is already in use; pick other ports"
            raise LocalKafkaError(msg)

    ensure_jars()
    java = _java()
    sasl_ssl = sasl_users is not None
    if not sasl_ssl and (data_dir / SASL_DIR / "users.json").is_file():
        msg = f"{data_dir} holds a SASL_SSL broker; start it with SASL (up --sasl-ssl)"
        raise LocalKafkaError(msg)
    scram_users = _prepare_sasl(data_dir, sasl_users) if sasl_ssl else []
    properties_path = data_dir / PROPERTIES_FILE
    _write_properties(
        properties_path, server_properties(data_dir, port, controller_port, sasl_ssl=sasl_ssl)
    )
    _format_storage(java, data_dir, properties_path, scram_users)

    server_log = data_dir / SERVER_LOG
    log_offset = server_log.stat().st_size if server_log.exists() else 0
    command = [
        java,
        *_jvm_options(data_dir, heap),
        "-cp",
        _classpath(),
        MAIN_CLASS,
        str(properties_path),
    ]
    with (data_dir / CONSOLE_LOG).open("ab") as console:
        process = subprocess.Popen(
            command,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group; a terminal's Ctrl-C does not reach it
            preexec_fn=None if detach else _parent_death_signal(),
        )
    handle = BrokerHandle(
        data_dir,
        port,
        controller_port,
        process.pid,
        process,
        security_protocol="SASL_SSL" if sasl_ssl else "PLAINTEXT",
    )
    _write_state(handle, heap)
    try:
        wait_ready(handle, timeout, log_offset=log_offset)
    except BaseException:
        handle.kill()
        raise
    return handle


def start(
    data_dir: Path,
    port: int,
    controller_port: int,
    *,
    heap: str = DEFAULT_HEAP,
    timeout: float = READY_TIMEOUT,
    detach: bool = False,
    sasl_users: Mapping[str, str] | None = None,
) -> BrokerHandle:
    """Start a single-node KRaft broker from ``data_dir`` and return once it serves requests.

    Fetches the jars on first use, formats the log dir on first use, writes server.properties
    on every start. ``detach=False`` (library use): the broker is SIGKILLed if the starting
    process dies. ``detach=True`` (the CLI): the broker outlives the starting process.
    ``sasl_users`` (name → password; may be empty) makes the client listener SASL_SSL with
    SCRAM-SHA-512 and these users (created when the data dir is first formatted); the
    handle's `client_env` gives the settings a civicstream client needs.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir / LOCK_FILE):
        return _start_unlocked(data_dir, port, controller_port, heap, timeout, detach, sasl_users)


# --------------------------------------------------------------------------- CLI


def _cmd_up(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    began = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir / LOCK_FILE):
        existing = running_broker(data_dir)
        if existing is not None:
            if (existing.port, existing.controller_port) != (args.port, args.controller_port):
                msg = (
                    f"a broker from {data_dir} already runs on ports {existing.port}/"
                    f"{existing.controller_port} (pid {existing.pid}); run `down` first or "
                    f"pass --port {existing.port} --controller-port {existing.controller_port}"
                )
                raise LocalKafkaError(msg)
            if (existing.security_protocol == "SASL_SSL") != args.sasl_ssl:
                msg = (
                    f"the broker from {data_dir} runs with {existing.security_protocol}; "
                    f"run `down` first or use another --data-dir"
                )
                raise LocalKafkaError(msg)
            wait_ready(existing, args.timeout)
            print(
                f"Kafka already running at {existing.bootstrap} (pid {existing.pid}); reusing it "
                f"(answered in {time.monotonic() - began:.2f} s)"
            )
            _print_client_env(existing)
            return 0
        handle = _start_unlocked(
            data_dir,
            args.port,
            args.controller_port,
            args.heap,
            args.timeout,
            detach=True,
            sasl_users={CLI_USER: secrets.token_urlsafe(18)} if args.sasl_ssl else None,
        )
    print(
        f"Kafka ready at {handle.bootstrap} after {time.monotonic() - began:.1f} s "
        f"(pid {handle.pid}, log {handle.log_file})"
    )
    _print_client_env(handle)
    return 0


def _print_client_env(handle: BrokerHandle) -> None:
    if handle.security_protocol == "SASL_SSL":
        print(f"  SASL_SSL, {SCRAM_MECHANISM}; civicstream connects with:")
        for name, value in handle.client_env().items():
            print(f"  export {name}={value}")
        return
    print(f"  tests can reuse it: export CIVIC_TEST_KAFKA_BOOTSTRAP={handle.bootstrap}")


def _cmd_down(args: argparse.Namespace) -> int:
    handle = running_broker(args.data_dir)
    if handle is None:
        print(f"no broker running from {args.data_dir}")
        return 0
    began = time.monotonic()
    handle.stop(args.timeout)
    print(
        f"stopped the broker at {handle.bootstrap} (pid {handle.pid}) in "
        f"{time.monotonic() - began:.1f} s"
    )
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    handle = running_broker(args.data_dir)
    if handle is None:
        print(f"not running (data dir {args.data_dir})")
        return 1
    try:
        brokers = kafka_brokers(HOST, handle.port, **handle.probe_options())
    except (OSError, LocalKafkaError) as exc:
        print(f"process {handle.pid} runs but {handle.bootstrap} does not answer: {exc}")
        return 3
    print(
        f"running at {handle.bootstrap} (pid {handle.pid}, metadata lists "
        f"{', '.join(f'node {b.node_id} at {b.host}:{b.port}' for b in brokers)}, "
        f"log {handle.log_file})"
    )
    return 0


def _cmd_jars(_args: argparse.Namespace) -> int:
    libs = ensure_jars()
    stamp = json.loads(JARS_STAMP.read_text())
    print(f"{len(stamp['jars'])} jars ({stamp['bytes'] / 1e6:.1f} MB) in {libs}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="localkafka.py",
        description=(
            "Run a local single-node Apache Kafka broker (KRaft) from the Maven Central jars "
            "in deploy/local-kafka/libs (fetched with Maven on first use). Needs java (17+) "
            "and mvn on PATH."
        ),
        epilog=(
            "Examples: `localkafka.py up` (broker on 127.0.0.1:9092, data in .kafka/), "
            "`localkafka.py up --port 19092 --controller-port 19093 --data-dir /tmp/k2`, "
            "`localkafka.py status`, `localkafka.py down`. The broker's log is "
            "<data-dir>/server.log."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--data-dir",
        type=lambda value: Path(value).resolve(),
        default=DEFAULT_DATA_DIR,
        help=f"where the broker keeps config, data, logs and its pid file (default: "
        f"{DEFAULT_DATA_DIR})",
    )

    up = commands.add_parser(
        "up",
        parents=[data],
        help="start the broker in the background (or reuse the one running) and wait until "
        "it serves requests",
        description="Start the broker detached (it keeps running after this command "
        "returns), or reuse the broker already running from the data dir; wait until it "
        "serves requests; print its bootstrap address.",
    )
    up.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"client port (default: {DEFAULT_PORT})"
    )
    up.add_argument(
        "--controller-port",
        type=int,
        default=DEFAULT_CONTROLLER_PORT,
        help=f"KRaft controller port (default: {DEFAULT_CONTROLLER_PORT})",
    )
    up.add_argument("--heap", default=DEFAULT_HEAP, help=f"JVM -Xmx (default: {DEFAULT_HEAP})")
    up.add_argument(
        "--sasl-ssl",
        action="store_true",
        help=f"the client listener is SASL_SSL ({SCRAM_MECHANISM}) with a test CA made by "
        f"openssl in <data-dir>/{TLS_DIR}/ and a user {CLI_USER!r} (its password in "
        f"<data-dir>/{SASL_DIR}/); prints the CIVIC_KAFKA_* settings that reach it. Use a "
        "data dir of its own: users are created when the dir is first formatted",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=READY_TIMEOUT,
        help=f"seconds to wait for readiness (default: {READY_TIMEOUT:.0f})",
    )
    up.set_defaults(func=_cmd_up)

    down = commands.add_parser(
        "down", parents=[data], help="stop the broker (SIGTERM, SIGKILL after --timeout)"
    )
    down.add_argument(
        "--timeout",
        type=float,
        default=STOP_TIMEOUT,
        help=f"grace period for the controlled shutdown (default: {STOP_TIMEOUT:.0f} s)",
    )
    down.set_defaults(func=_cmd_down)

    status = commands.add_parser(
        "status",
        parents=[data],
        help="exit 0 if the broker runs and answers, 1 if it is not running, 3 if it runs but "
        "does not answer",
    )
    status.set_defaults(func=_cmd_status)

    jars = commands.add_parser("jars", help="only fetch the broker jars (no-op when present)")
    jars.set_defaults(func=_cmd_jars)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except LocalKafkaError as exc:
        print(f"localkafka: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

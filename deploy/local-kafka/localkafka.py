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
    python deploy/local-kafka/localkafka.py status | down | jars

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
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
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

# Kafka protocol: API keys and the request versions used by the readiness probe.
_API_METADATA = 3
_API_VERSIONS = 18
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


def server_properties(data_dir: Path, port: int, controller_port: int) -> dict[str, str]:
    """The single-node KRaft configuration (combined broker + controller, node 1)."""
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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


def _write_properties(path: Path, properties: dict[str, str]) -> None:
    lines = ["# Written by deploy/local-kafka/localkafka.py at every start; edits are lost."]
    lines += [f"{key}={value}" for key, value in properties.items()]
    path.write_text("\n".join(lines) + "\n")


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


def _format_storage(java: str, data_dir: Path, properties_path: Path) -> None:
    """Format the KRaft log dir once; a formatted dir keeps its cluster id across restarts."""
    if (data_dir / KAFKA_LOG_DIR / "meta.properties").is_file():
        return
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
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = (
            f"formatting {data_dir / KAFKA_LOG_DIR} failed (exit code {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
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


def kafka_brokers(host: str, port: int, *, timeout: float = 2.0) -> list[BrokerInfo]:
    """Ask a broker for the cluster's brokers: ApiVersions v0, then Metadata v4 (no topics).

    Raises OSError when nothing accepts connections and KafkaProtocolError when the peer
    answers but not like a Kafka broker that serves requests.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
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

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

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
        data_dir, int(state["port"]), int(state["controller_port"]), int(state["pid"])
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
            brokers = kafka_brokers(HOST, handle.port, timeout=1.0)
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


def _start_unlocked(
    data_dir: Path, port: int, controller_port: int, heap: str, timeout: float, detach: bool
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
    properties_path = data_dir / PROPERTIES_FILE
    _write_properties(properties_path, server_properties(data_dir, port, controller_port))
    _format_storage(java, data_dir, properties_path)

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
    handle = BrokerHandle(data_dir, port, controller_port, process.pid, process)
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
) -> BrokerHandle:
    """Start a single-node KRaft broker from ``data_dir`` and return once it serves requests.

    Fetches the jars on first use, formats the log dir on first use, writes server.properties
    on every start. ``detach=False`` (library use): the broker is SIGKILLed if the starting
    process dies. ``detach=True`` (the CLI): the broker outlives the starting process.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir / LOCK_FILE):
        return _start_unlocked(data_dir, port, controller_port, heap, timeout, detach)


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
            wait_ready(existing, args.timeout)
            print(
                f"Kafka already running at {existing.bootstrap} (pid {existing.pid}); reusing it "
                f"(answered in {time.monotonic() - began:.2f} s)"
            )
            return 0
        handle = _start_unlocked(
            data_dir, args.port, args.controller_port, args.heap, args.timeout, detach=True
        )
    print(
        f"Kafka ready at {handle.bootstrap} after {time.monotonic() - began:.1f} s "
        f"(pid {handle.pid}, log {handle.log_file})"
    )
    print(f"  tests can reuse it: export CIVIC_TEST_KAFKA_BOOTSTRAP={handle.bootstrap}")
    return 0


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
        brokers = kafka_brokers(HOST, handle.port)
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

#!/usr/bin/env python3
"""Run a throwaway PostgreSQL server from the Debian ``postgresql`` package's binaries.

``initdb`` into a directory, ``postgres`` on a free loopback port (and a unix socket in
the same directory), trust authentication for the one role ``civic``. Standard library
only, like deploy/local-kafka/localkafka.py: the test session and the benchmarks load it
by path (`civicstream.localbroker.load_local_postgres`).

PostgreSQL refuses to run as root, so as root every server process runs as the Debian
``postgres`` user (the directory is handed to it); as any other user it runs as that user.
The binaries are found in ``CIVIC_PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin``,
else on ``PATH``.

As a module::

    server = start()                  # temp dir, free port; fsync off (test speed)
    server.url("postgres")            # "postgresql://civic@127.0.0.1:PORT/postgres"
    server.create_database("t1")
    server.stop()                     # fast shutdown, temp dir removed

As a CLI (a server for development that outlives the command)::

    python3 deploy/local-postgres/localpg.py up [--port 5433] [--data-dir .postgres]
    python3 deploy/local-postgres/localpg.py status | down
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / ".postgres"
DEFAULT_PORT = 5433
ROLE = "civic"
HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1
# For throwaway test servers: durability is not the point, speed is.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class PostgresError(RuntimeError):
    """The server could not be set up, started or stopped; the message says why."""


def bindir() -> Path:
    """The folder with initdb, postgres and createdb."""
    configured = os.environ.get("CIVIC_PG_BINDIR")
    if configured:
        return Path(configured)
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    msg = (
        "PostgreSQL server binaries not found (initdb); install the Debian package "
        "'postgresql' (make test does) or set CIVIC_PG_BINDIR"
    )
    raise PostgresError(msg)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    """The user to run server processes as: 'postgres' when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        msg = "running as root needs the 'postgres' user (the Debian postgresql package adds it)"
        raise PostgresError(msg) from None
    return "postgres"


def _hand_over(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec hook: fast shutdown of the server when the starting process dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGINT)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGINT)

    return hook


@dataclass
class Server:
    """A running server. `process` is set in the process that started it."""

    base_dir: Path
    port: int
    pid: int
    temporary: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{ROLE}@{HOST}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create database `name` (createdb); its URL."""
        subprocess.run(
            [str(bindir() / "createdb"), "-h", HOST, "-p", str(self.port), "-U", ROLE, name],
            check=True,
            capture_output=True,
        )
        return self.url(name)

    def is_running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _alive(self.pid)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Fast shutdown (SIGINT), immediate (SIGQUIT) after `timeout`; removes a temp dir."""
        if self.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + timeout
            while self.is_running() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.is_running():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGQUIT)
                if self.process is not None:
                    self.process.wait(10)
        if self.temporary:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _initdb(base_dir: Path, user: str | None) -> None:
    data = base_dir / "data"
    command = [
        str(bindir() / "initdb"),
        "-D",
        str(data),
        "-U",
        ROLE,
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]
    result = subprocess.run(command, user=user, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"initdb failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        raise PostgresError(msg)


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    ready = [str(bindir() / "pg_isready"), "-q", "-h", HOST, "-p", str(server.port), "-U", ROLE]
    while time.monotonic() < deadline:
        if not server.is_running():
            tail = server.log_file.read_text(errors="replace")[-3000:]
            msg = f"postgres exited during start-up; its log ends:\n{tail}"
            raise PostgresError(msg)
        if subprocess.run(ready, check=False).returncode == 0:
            return
        time.sleep(0.05)
    server.stop()
    msg = f"postgres not ready on port {server.port} after {timeout:.0f}s (log: {server.log_file})"
    raise PostgresError(msg)


def start(
    base_dir: Path | None = None,
    port: int | None = None,
    *,
    fast: bool = True,
    owned: bool = True,
    timeout: float = READY_TIMEOUT,
) -> Server:
    """Start a server in `base_dir` (a new temp dir, removed on stop, when None).

    `fast` turns fsync off (throwaway data); `owned` stops the server when this process
    dies (tests) instead of letting it outlive us (the CLI's ``up``).
    """
    user = _run_as()
    temporary = base_dir is None
    if base_dir is None:
        base_dir = Path(tempfile.mkdtemp(prefix="civic-pg-"))
    base_dir.mkdir(parents=True, exist_ok=True)
    _hand_over(base_dir, user)
    if not (base_dir / "data" / "PG_VERSION").exists():
        _initdb(base_dir, user)
    port = port or free_port()
    settings = [*FAST_SETTINGS] if fast else []
    command = [
        str(bindir() / "postgres"),
        "-D",
        str(base_dir / "data"),
        "-p",
        str(port),
        "-h",
        HOST,
        "-k",
        str(base_dir),
        *(part for setting in settings for part in ("-c", setting)),
    ]
    log_path = base_dir / "server.log"
    with log_path.open("ab") as log:
        _hand_over(log_path, user)
        process = subprocess.Popen(
            command,
            user=user,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal() if owned else None,
        )
    server = Server(base_dir, port, process.pid, temporary, process)
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


# --- CLI ----------------------------------------------------------------------------------


def _running(base_dir: Path) -> Server | None:
    pid_file = base_dir / "data" / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return Server(base_dir, port, pid) if _alive(pid) else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status"):
        sub = commands.add_parser(name)
        sub.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
        if name == "up":
            sub.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    base_dir = args.data_dir.resolve()
    running = _running(base_dir)
    try:
        if args.command == "up":
            server = running or start(base_dir, args.port, fast=False, owned=False)
            print(server.url("postgres"))
        elif args.command == "down":
            if running:
                running.stop()
            print("stopped" if running else "not running")
        else:
            print(running.url("postgres") if running else "not running")
            return 0 if running else 1
    except PostgresError as error:
        print(f"localpg: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real Prometheus (Debian's `prometheus`) scraping civicstream processes.

`make run` starts one for the demo when the binary is installed; the integration tests
start one per test on a free port. The configuration is generated (JSON is YAML), with
the job names the alert rules and dashboards rely on and the rules of deploy/prometheus.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["JOBS", "RULES_DIR", "PrometheusServer", "find_prometheus", "prometheus_config"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = PROJECT_ROOT / "deploy" / "prometheus" / "rules"

# process -> Prometheus job name (the `job` label of every series it exports)
JOBS: Mapping[str, str] = {"worker": "civicstream-worker", "sink": "civicstream-sink"}


def find_prometheus() -> str | None:
    """Path of the `prometheus` binary, or None when it is not installed."""
    return shutil.which("prometheus")


def prometheus_config(
    targets: Mapping[str, Sequence[str]],
    *,
    interval_s: float = 5.0,
    rule_files: Sequence[Path] | None = None,
) -> dict[str, Any]:
    """Scrape `targets` ({process: ["host:port", ...]}) under the project's job names."""
    interval = f"{interval_s:g}s"
    rules = sorted(RULES_DIR.glob("*.yml")) if rule_files is None else rule_files
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rules],
        "scrape_configs": [
            {"job_name": JOBS[process], "static_configs": [{"targets": list(hosts)}]}
            for process, hosts in targets.items()
        ],
    }


@dataclass
class PrometheusServer:
    """One Prometheus process with its own configuration and data directory."""

    workdir: Path
    port: int
    config: Mapping[str, Any]
    binary: str = "prometheus"
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> PrometheusServer:
        """Start it and wait until it answers /-/ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(json.dumps(self.config, indent=2))
        self._log = (self.workdir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self.process.poll() is not None:
                msg = f"prometheus exited with {self.process.returncode}:\n{self.log()}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                self.stop()
                msg = f"prometheus not ready after {timeout_s:.0f}s:\n{self.log()}"
                raise TimeoutError(msg)
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path> and return its `data` (raises on an error status)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            msg = f"Prometheus API {path} {params}: {body}"
            raise RuntimeError(msg)
        return body["data"]

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) for every series of the result."""
        data = self.api("query", query=expr)
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

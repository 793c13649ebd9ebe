"""The container image, validated without a Docker engine (none runs on these machines).

What is checked here: the Dockerfile lints clean (hadolint), it copies every package the
project ships, and its pinned, hashed dependencies install into a clean virtualenv with
the project on top, consistent (`pip check`) and runnable. What is not: `docker build`
itself and the base image (pulling it needs a registry this machine cannot reach).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "deploy" / "docker" / "requirements.txt"
HADOLINT = Path(sys.executable).parent / "hadolint"


def shipped_packages() -> list[str]:
    """Top-level packages of the distribution (pyproject's setuptools include patterns)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted(pattern.rstrip("*") for pattern in patterns)


def bundled_cities() -> list[Path]:
    return sorted((ROOT / "civicstream" / "cities").glob("*.toml"))


def pinned() -> dict[str, str]:
    """Package name (normalised) -> version, from the lock file."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", line)
        if match:
            pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def test_the_dockerfile_lints_clean() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_as_an_unprivileged_user_from_a_multi_stage_build() -> None:
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^ENTRYPOINT \[\"civicstream\"\]", text, re.MULTILINE)


def test_the_image_copies_every_package_the_project_ships() -> None:
    copied = set(re.findall(r"^COPY (\w+) /src/\1$", DOCKERFILE.read_text(), re.MULTILINE))
    assert copied == set(shipped_packages())
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert set(shipped_packages()) <= allowed


def test_the_lock_pins_every_dependency_the_project_declares() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = pinned()
    for text in config["project"]["dependencies"]:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in {LOCK.name}: run `make docker-lock`"
        assert requirement.specifier.contains(pins[name]), (
            f"{name}=={pins[name]} does not satisfy {requirement}: run `make docker-lock`"
        )
    assert all("--hash=sha256:" in block for block in LOCK.read_text().split("==")[1:])


def test_the_pinned_dependencies_install_in_a_clean_venv_and_the_cli_runs(tmp_path: Path) -> None:
    # the build context, as .dockerignore leaves it
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, context / name)
    for package in shipped_packages():
        shutil.copytree(
            ROOT / package, context / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    steps = [
        [*pip, "install", "-q", "--no-deps", "--require-hashes", "-r", str(LOCK)],
        [*pip, "install", "-q", "--no-deps", str(context)],
        [*pip, "check"],
        # the worker's RocksDB table store (CIVIC_STATE_STORE=rocksdb, the Kubernetes default)
        [str(env_dir / "bin" / "python"), "-c", "import rocksdict, faust.stores.rocksdb"],
        [str(env_dir / "bin" / "civicstream"), "config", "check", *map(str, bundled_cities())],
        [str(env_dir / "bin" / "civicstream"), "--help"],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, check=False, cwd=tmp_path)
        assert result.returncode == 0, f"{' '.join(step)}:\n{result.stdout}\n{result.stderr}"
    assert "usage: civicstream" in result.stdout

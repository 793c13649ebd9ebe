"""The dependencies the image ships have no known vulnerabilities.

`pip-audit` checks the hashed lock (deploy/docker/requirements.txt: the runtime
dependencies, exactly as installed in the image) against PyPI's vulnerability data
(``https://pypi.org/pypi/<name>/<version>/json``, the PyPA advisory database); a known
vulnerability fails the test with its id and the versions that fix it. Upgrade the pin
(``make docker-lock``) or, if no fix exists yet, say why in the lock's pull request.

Where PyPI answers only for projects, not for single releases (so on these machines),
pip-audit reports every pin as "could not be audited"; the test then reads each
project's page (``https://pypi.org/pypi/<name>/json``), whose vulnerabilities are those
of its latest release: exact for every pin that is the latest release. Pins older than
that cannot be checked there; they are named in a warning (`make audit` runs pip-audit
alone, strictly, where the per-release data is reachable).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "deploy" / "docker" / "requirements.txt"
PIP_AUDIT = Path(sys.executable).parent / "pip-audit"


def pins() -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", LOCK.read_text(), re.MULTILINE))


def pip_audit() -> list[dict[str, Any]]:
    """pip-audit's verdict per locked dependency (JSON format)."""
    result = subprocess.run(
        [
            str(PIP_AUDIT),
            *("--requirement", str(LOCK), "--require-hashes", "--disable-pip"),
            *("--vulnerability-service", "pypi", "--format", "json"),
            *("--progress-spinner", "off"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.stdout.strip(), f"pip-audit failed (exit {result.returncode}):\n{result.stderr}"
    dependencies: list[dict[str, Any]] = json.loads(result.stdout)["dependencies"]
    return dependencies


def latest_release_vulnerabilities(name: str) -> tuple[str, list[dict[str, Any]]]:
    """The project's latest version and that release's known vulnerabilities (PyPI)."""
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as response:
        page = json.load(response)
    current = [v for v in page["vulnerabilities"] if not v.get("withdrawn")]
    return page["info"]["version"], current


def _describe(name: str, version: str, vulnerabilities: list[dict[str, Any]]) -> str:
    found = ", ".join(
        f"{v['id']} (fixed in {', '.join(v.get('fix_versions') or v.get('fixed_in') or ['?'])})"
        for v in vulnerabilities
    )
    return f"{name}=={version}: {found}"


def test_the_locked_dependencies_have_no_known_vulnerabilities() -> None:
    locked = pins()
    verdicts = pip_audit()
    assert {v["name"].lower() for v in verdicts} == {name.lower() for name in locked}
    vulnerable = [
        _describe(v["name"], v["version"], v["vulns"]) for v in verdicts if v.get("vulns")
    ]
    skipped = [v["name"] for v in verdicts if v.get("skip_reason")]
    unaudited = []
    versions = {name.lower(): version for name, version in locked.items()}
    with ThreadPoolExecutor(8) as pool:
        pages = dict(zip(skipped, pool.map(latest_release_vulnerabilities, skipped), strict=True))
    for name, (latest, vulnerabilities) in pages.items():
        pinned = versions[name.lower()]
        if latest != pinned:
            unaudited.append(f"{name}=={pinned} (latest {latest})")
        elif vulnerabilities:
            vulnerable.append(_describe(name, pinned, vulnerabilities))
    assert vulnerable == [], "known vulnerabilities in deploy/docker/requirements.txt"
    if unaudited:
        warnings.warn(
            f"PyPI gave no vulnerability data for these pins (not their project's latest "
            f"release): {', '.join(unaudited)}; `make audit` checks them where it can",
            stacklevel=1,
        )

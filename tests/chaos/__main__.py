"""`python -m tests.chaos --seed N [--profile long|short]`: one chaos run (see harness.py).

Exit status 0 when every dataset equals the clean run's, the dead letters are the same and
the archive holds every raw record exactly once; 1 otherwise. The last line is
`kills: N, differences: D`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.chaos.harness import PROFILES, run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=1, help="schedule seed [%(default)s]")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="long")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the broker data, logs, stores and archives here (default: a temp dir)",
    )
    args = parser.parse_args(argv)
    if args.workdir is not None:
        report = run_chaos(args.seed, PROFILES[args.profile], args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="civic-chaos-") as tmp:
            report = run_chaos(args.seed, PROFILES[args.profile], Path(tmp))
    print(report.summary())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())

"""`python -m tests.fuzz [--messages 100000]` (`make fuzz-long`): hostile messages mixed
with real ones through the real worker and sink, against a clean run of the real ones.

The real input is Dongsi, Tiantan and Huairou readings (`--days`) and SFPD incident rows
(`--incident-days`, then the source's heartbeat). Exit status 0 when every hostile message
is dead-lettered exactly once with its original bytes and every dataset equals the clean
run's. Uses CIVIC_KAFKA_BOOTSTRAP when set, else starts a broker of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from civicstream.localbroker import load_local_kafka
from tests.fuzz.stream import fuzzed_run
from tests.integration.harness import PipelineUnderTest
from tests.integration.test_hostile_stream import CITIES, sfpd_rows
from tests.integration.test_pipeline import beijing_days


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000, help="hostile messages")
    parser.add_argument("--days", type=int, default=14, help="days of real readings [14]")
    parser.add_argument("--incident-days", type=int, default=7, help="SFPD days [7]")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="keep logs and stores here")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="civic-fuzz-"))
    broker = None
    bootstrap = os.environ.get("CIVIC_KAFKA_BOOTSTRAP", "").strip()
    if not bootstrap:
        local = load_local_kafka()
        broker = local.start(workdir / "kafka", *local.free_ports(2))
        bootstrap = broker.bootstrap
    run = f"fuzz-{int(time.time())}"
    pipelines = []
    try:
        for name in ("clean", "fuzzed"):
            (workdir / name).mkdir(parents=True, exist_ok=True)
            pipeline = PipelineUnderTest(
                bootstrap, f"{run}-{name}.", workdir / name, partitions=3, config=CITIES
            )
            pipelines.append(pipeline.start_all())
        report = fuzzed_run(
            *pipelines,
            beijing_days(args.days),
            sfpd_rows(args.incident_days),
            hostile_count=args.messages,
            seed=args.seed,
            timeout_s=3600,
        )
    finally:
        for pipeline in pipelines:
            pipeline.stop()
        if broker is not None:
            broker.stop()
    print(report.summary())
    outcome = {
        kind: {**vars(o), "reasons": dict(o.reasons)}
        for kind, o in (("readings", report.readings), ("incidents", report.incidents))
    }
    summary = {**vars(report), **outcome, "passed": report.passed}
    (workdir / "report.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"logs and stores: {workdir}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())

"""What the Faust peers share: their app on the run's broker, and running it as a worker."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import faust

from bench.harness import SECURITY
from streams.app import broker_credentials

__all__ = ["peer_app", "run"]


def peer_app(args: argparse.Namespace, **settings: Any) -> faust.App:
    """A Faust app for a peer's command line (bench.peers.job.parser), in-memory tables."""
    return faust.App(
        args.group,
        broker=[f"kafka://{address}" for address in args.bootstrap.split(",")],
        broker_credentials=broker_credentials(SECURITY),
        store="memory://",
        datadir=str(args.state_dir),
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        **settings,
    )


def run(app: faust.App) -> None:
    """Run `app` as a quiet worker until the harness stops it."""
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    worker.execute_from_commandline()

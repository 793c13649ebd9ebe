"""`python -m bench.peers.faust_floor`: the fastest a Faust agent moves these records here.

No job at all: one agent takes the raw records in batches (`take_events`, as civicstream's
worker does) and sends each one's bytes, unchanged, to the output topic, the way the
aiokafka baseline does. What it costs per record is Faust's own machinery (its fetcher
thread, the conductor, the stream, acks and commits, its producer), which every
Faust-based worker pays before it does any work; civicstream's rate over this one is how
close the worker gets to what Faust allows.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from bench.harness import SECURITY
from bench.peers import job
from streams.app import BATCH_MAX, BATCH_WITHIN_SECONDS, broker_credentials


def main() -> None:
    args = job.parser("python -m bench.peers.faust_floor", __doc__).parse_args()
    progress = job.Progress(args.expect, args.result)
    app = faust.App(
        args.group,
        broker=[f"kafka://{address}" for address in args.bootstrap.split(",")],
        broker_credentials=broker_credentials(SECURITY),
        store="memory://",
        datadir=str(args.state_dir),
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    raw = app.topic(
        args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(raw)
    async def passthrough(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_SECONDS):
            for event in events:
                message = event.message
                await app.producer.send(args.output, message.key, message.value, None, None, None)
            await app.producer.flush()
            for _ in events:
                progress.record()
                progress.outputs += 1

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()

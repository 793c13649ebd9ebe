"""`python -m bench.peers.faust_floor`: the fastest a Faust agent moves these records here.

No job at all: one agent takes the raw records in batches (`take_events`) and sends each
one's bytes, unchanged, to the output topic, the way the aiokafka baseline does. What it
costs per record is Faust's own machinery (its fetcher thread, the conductor, the stream,
acks and commits, its producer), which every worker that reads through a Faust agent pays
before it does any work. civicstream's worker takes its records out of Faust's fetches
instead (streams.intake), so it is not bound by this floor.
"""

from __future__ import annotations

from typing import Any

from bench.peers import job
from bench.peers.faust_app import peer_app, run
from streams.app import BATCH_MAX

WITHIN_SECONDS = 0.25


def main() -> None:
    args = job.parser("python -m bench.peers.faust_floor", __doc__).parse_args()
    progress = job.Progress(args.expect, args.result)
    app = peer_app(args)
    raw = app.topic(
        args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(raw)
    async def passthrough(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=WITHIN_SECONDS):
            for event in events:
                message = event.message
                await app.producer.send(args.output, message.key, message.value, None, None, None)
            await app.producer.flush()
            for _ in events:
                progress.record()
                progress.outputs += 1

    run(app)


if __name__ == "__main__":
    main()

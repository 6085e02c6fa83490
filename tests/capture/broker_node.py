"""One process of a test cluster (tests/capture/test_broker.py): a ``ClusterListener``
whose consumer appends the id of every row it is handed to ``DIR/NAME.rows``, and its
state (leader? reading the broker or the database?) in ``DIR/NAME.json``.

    python -m tests.capture.broker_node DIR NAME BROKER_URL     # until SIGTERM
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path


async def serve(directory: Path, name: str, url: str) -> None:
    from livedata.capture.leader import ClusterListener
    from livedata.capture.log import Batch

    listener = ClusterListener(broker_url=url)
    rows = (directory / f"{name}.rows").open("a")

    async def consumer(batch: Batch) -> None:
        rows.write("".join(f"{r.id}\n" for r in batch.rows))
        rows.flush()

    listener.follow(consumer, name=name)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, listener.stop)
    task = asyncio.create_task(listener.run())
    state = directory / f"{name}.json"
    while not task.done():
        facts = {
            "pid": os.getpid(),
            "started": listener.started.is_set(),
            "leading": listener.leader.leading,
            "source": listener.source,
            "broker_batches": listener.broker_batches,
            "fallbacks": listener.fallbacks,
        }
        state.with_suffix(".tmp").write_text(json.dumps(facts))
        state.with_suffix(".tmp").replace(state)
        await asyncio.wait([task], timeout=0.05)
    await task
    rows.close()


def main() -> None:
    import django

    django.setup()
    directory, name, url = sys.argv[1:4]
    asyncio.run(serve(Path(directory), name, url))


if __name__ == "__main__":
    main()

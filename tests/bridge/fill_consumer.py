"""A remote consumer process of the exactly-once test: every fill it gets, one JSON line.

``python tests/bridge/fill_consumer.py --url nats://127.0.0.1:N --name c3 --out c3.jsonl``
opens ``RemoteConnector(name=...)``, prints ``READY`` once its fill stream is open, and
appends each fill to ``--out`` as ``{"exec_id": ..., "order_ref": ..., "pid": ...}``
(flushed per line, so the file is the ledger of what this process delivered). SIGTERM
or SIGINT stops it between two fills: the fill in hand is written, the loop comes back
to the iterator without taking another (``take_ready()``, not iterated), and the
iterator is closed (a remote acknowledges a fill once its reader came back for more; the
fills still buffered are handed back to JetStream and come to the next process). Then
it closes the connector and exits 0: the durable consumer keeps its place, and the next
process under the same name resumes there. ``--slow S`` spends S seconds on each fill
(a consumer that falls behind).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import TextIO

from ibconn.bridge.remote import RemoteConnector
from ibconn.orders.models import Fill


async def _consume(args: argparse.Namespace, out: TextIO) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pid = os.getpid()
    async with RemoteConnector(
        url=args.url, name=args.name, subject_prefix=args.prefix, fills_from="all"
    ) as remote:
        fills = remote.fills()
        print("READY", flush=True)

        in_hand = False  # a fill taken from the iterator and not yet written

        async def handle(fill: Fill) -> None:
            if args.slow:
                await asyncio.sleep(args.slow)  # a consumer that falls behind
            line = {"exec_id": fill.exec_id, "order_ref": fill.order_ref, "pid": pid}
            out.write(json.dumps(line) + "\n")
            out.flush()

        async def pump() -> None:
            nonlocal in_hand
            async for fill in fills:
                in_hand = True
                await handle(fill)
                in_hand = False
                if stop.is_set():
                    # come back to the iterator without taking a fill (what was handled
                    # is settled), then end it: the fills still buffered are handed back
                    fills.take_ready()
                    fills.close()
                    return

        pumping = asyncio.create_task(pump())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({pumping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if pumping.done():
            pumping.result()  # the stream ended or failed: say so (exit status 1)
            return 1
        if not in_hand:
            fills.close()  # waiting for the next fill: nothing taken, the iterator ends
        await pumping
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--prefix", default="ibconn")
    parser.add_argument("--slow", type=float, default=0.0, help="seconds of work per fill")
    args = parser.parse_args()
    with open(args.out, "a", encoding="utf-8") as out:
        return asyncio.run(_consume(args, out))


if __name__ == "__main__":
    sys.exit(main())

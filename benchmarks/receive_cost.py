"""Per-message cost of the receive path's layers, on one synthetic 256 KiB read of quotes.

Usage::

    python benchmarks/receive_cost.py [--messages 9000] [--repeats 30] [--time-limit 300]

No socket and no gateway: one read of ``--messages`` tickPrice messages (bid, ask and
last in turn, as the sim's fast mode sends them) for one line is fed to
``FastReceiver.data_received`` again and again, and the best of ``--repeats`` runs is
reported per message for each layer (thread CPU time, the layers interleaved, so
that a loaded machine inflates them alike; compare the ratios):

* ``framing``: the framing and split loop alone (length prefix, slice, ``split``),
  the floor of any pure-Python receive path;
* ``framing + tap``: ibconn's receive path with the tick tap owning the line (the
  conversions and the ticker state, the flat batch), the batch dropped at the flush;
* ``framing + tap + ticks``: plus what the market data service does per update for
  ``connector.ticks`` (the kind lookup, the range checks, one ``Tick``), without
  publishing;
* ``ib_async``: ``ib_async``'s own decoder and wrapper on the same read through
  ibconn's framing (``Decoder.interpret`` per message);
* with ``--variants``, two pure-Python variants of ``framing + tap`` that were tried
  (docs/benchmarks.md): the message counter and read position written once per run of
  tapped messages instead of per message, and, as a *ceiling* only (its tickers are
  wrong), the tap without its per-message ticker writes: what applying a quote-only
  line's ticker state once per read could save at most.

What it is for: how much of the per-update time an accelerator of the framing and
tap could remove (docs/benchmarks.md, "Per-message work").
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import hard_limit, machine, table

_LEN = struct.Struct(">I")


def quotes(req_id: int, count: int) -> bytes:
    out = []
    for seq in range(1, count + 1):
        tick_type = (4, 1, 2)[seq % 3]
        body = f"1\x006\x00{req_id}\x00{tick_type}\x00{190 + seq % 50 / 100:.2f}\x00{seq}\x000\x00"
        out.append(_LEN.pack(len(body)) + body.encode())
    return b"".join(out)


def _client(tap: bool, service: bool, install: Any = None) -> tuple[Any, Any]:
    from ib_async import IB, Stock  # noqa: PLC0415

    from ibconn.wire.receive import install_fast_receive  # noqa: PLC0415
    from ibconn.wire.tick_decoding import MKT, TickTap  # noqa: PLC0415

    ib = IB()
    client: Any = ib.client
    receiver = (install or install_fast_receive)(ib)
    assert receiver is not None
    client._serverVersion = client.decoder.serverVersion = 178
    client._apiReady = True
    ticker = ib.wrapper.startTicker(1, Stock("AAPL", "SMART", "USD", conId=265598), "mktData")
    if tap:
        receiver.tap = TickTap(ib.wrapper)
        sink = _service_sink() if service else (lambda _line, _items: None)
        receiver.tap.own(1, ticker, MKT, sink, None)
    return ib, receiver


def _service_sink() -> Any:
    """The service's per-batch work for one ``ticks()`` consumer (see market_data/ingest.py)."""
    from ibconn.market_data.models import Tick, TickKind  # noqa: PLC0415

    kinds = {1: TickKind.BID, 2: TickKind.ASK, 4: TickKind.LAST}
    new = tuple.__new__

    def sink(_line: Any, items: list[Any]) -> None:
        it = iter(items)
        out = []
        add = out.append
        for _, tick_type, price, size in zip(it, it, it, it, strict=False):
            kind = kinds.get(tick_type)
            if kind is None:
                continue
            if 0.0 < size < float("inf") and 0.0 <= price < float("inf"):
                add(new(Tick, ("AAPL", 265598, None, kind, price, size, False, False)))

    return sink


def _load_install(path: str) -> Any:
    """``install_fast_receive`` of another version of ``ibconn/wire/receive.py``."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("_other_receive", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.install_fast_receive


def _framing_only(read: bytes) -> None:
    unpack_from = _LEN.unpack_from
    text = read.decode("ascii")
    n, pos = len(read), 0
    while n - pos > 4:
        end = pos + 4 + unpack_from(read, pos)[0]
        fields = text[pos + 4 : end].split("\0")
        del fields[-1]
        pos = end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=9000)  # one 256 KiB read
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--variants", action="store_true", help="also the variants tried")
    parser.add_argument(
        "--compare-file",
        help="another version of ibconn/wire/receive.py (e.g. `git show main:...`): "
        "its FastReceiver with the tap as one more layer",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=300.0,
        help="seconds it may take (then it fails, exit 3)",
    )
    args = parser.parse_args()
    hard_limit(args.time_limit, "benchmarks/receive_cost.py")
    read = quotes(1, args.messages)
    layers: list[tuple[str, Any]] = [("framing and split only", lambda: _framing_only(read))]
    for label, tap, service in (
        ("framing + tap", True, False),
        ("framing + tap + Tick per update", True, True),
        ("ib_async decoder + wrapper, ibconn framing", False, False),
    ):
        _ib, receiver = _client(tap, service)
        layers.append((label, lambda r=receiver: r.data_received(read)))
    if args.variants:
        from _variants import counters_once, no_ticker_writes  # noqa: PLC0415

        for label, variant in (
            ("variant: counters once per run of tapped messages", counters_once),
            ("variant: no per-message ticker writes (ceiling, wrong tickers)", no_ticker_writes),
        ):
            _ib, receiver = _client(True, False)
            variant(receiver)
            layers.append((label, lambda r=receiver: r.data_received(read)))
    if args.compare_file:
        _ib, receiver = _client(True, False, _load_install(args.compare_file))
        label = f"framing + tap, {args.compare_file}"
        layers.append((label, lambda r=receiver: r.data_received(read)))
    best = [float("inf")] * len(layers)
    for _ in range(args.repeats):  # interleaved: a load change hits every layer alike
        for i, (_label, run) in enumerate(layers):
            started = time.thread_time()
            run()
            best[i] = min(best[i], time.thread_time() - started)
    base = best[0]
    rows = [
        [label, f"{1e9 * cost / args.messages:.0f}", f"{cost / base:.1f}"]
        for (label, _run), cost in zip(layers, best, strict=True)
    ]
    info = machine()
    print(
        f"\nReceive path per message, one read of {args.messages:,} quotes ({len(read):,} bytes), "
        f"best of {args.repeats} (CPU time). {info['nproc']} CPUs, {info['cpu']}, "
        f"Python {info['python']}, {info['date']}.\n"
    )
    print(table(["layers", "CPU ns per message", "× framing"], rows))


if __name__ == "__main__":
    main()

"""The seeded price process, replay, the Market object and the simulator's settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ibconn.errors import ConfigError
from ibconn.sim import Instrument, Market, MarketQuote, SimClock, SimConfig
from ibconn.sim.market.walk import load_replay_csv


def _path(market: Market, symbol: str, steps: int) -> list[tuple[float, float, float]]:
    out = []
    for _ in range(steps):
        market.step(symbol)
        q = market.quote(symbol)
        out.append((q.bid, q.ask, q.last))
    return out


def test_same_seed_same_sequence_different_seed_different() -> None:
    a = Market(SimConfig(seed=42))
    b = Market(SimConfig(seed=42))
    c = Market(SimConfig(seed=43))
    # stepping another instrument in between must not change AAPL's own sequence
    b.step("MSFT", count=17)
    path_a, path_b, path_c = _path(a, "AAPL", 200), _path(b, "AAPL", 200), _path(c, "AAPL", 200)
    assert path_a == path_b
    assert path_a != path_c


def test_prices_stay_on_the_tick_grid_with_the_spread() -> None:
    market = Market(SimConfig(seed=3))
    for symbol, tick in (("AAPL", 0.01), ("EURUSD", 0.00005), ("ES", 0.25)):
        for _ in range(300):
            market.step(symbol)
            q = market.quote(symbol)
            for price in (q.bid, q.ask):
                assert abs(price / tick - round(price / tick)) < 1e-6, (symbol, price)
            assert q.ask > q.bid > 0


def test_forex_never_trades_stocks_do() -> None:
    market = Market(SimConfig(seed=5, trade_probability=1.0))
    market.step("EURUSD", count=20)
    market.step("AAPL", count=20)
    eur, aapl = market.quote("EURUSD"), market.quote("AAPL")
    assert eur.last != eur.last  # NaN: no trades on IDEALPRO
    assert eur.volume == 0
    assert aapl.volume > 100 * 1000
    assert aapl.low <= aapl.last <= aapl.high


def test_listeners_set_price_and_start_prices() -> None:
    market = Market(SimConfig(start_prices={"AAPL": 100.0, "EURUSD": 1.2}))
    assert abs(market.quote("AAPL").mid - 100.0) < 0.05
    assert abs(market.quote("EUR.USD").mid - 1.2) < 0.001
    seen: list[tuple[str, MarketQuote]] = []
    # Options (priced from their underlying) are notified after it: watch the rest.
    market.add_listener(
        lambda inst, q: inst.sec_type != "OPT" and seen.append((inst.symbol, q.copy()))
    )
    market.set_price("AAPL", 123.456)
    assert seen[-1][0] == "AAPL"
    assert seen[-1][1].last == 123.46
    assert seen[-1][1].bid < seen[-1][1].ask
    with pytest.raises(ValueError):
        market.set_price("AAPL", -1)
    with pytest.raises(KeyError):
        market.quote("NOPE")


def test_replay_csv_drives_prices(tmp_path: Path) -> None:
    csv = tmp_path / "ticks.csv"
    csv.write_text(
        "time,symbol,bid,ask,last,bid_size,ask_size,last_size\n"
        "0.0,AAPL,180.00,180.02,180.01,300,400,100\n"
        "0.5,AAPL,,180.03,,,,\n"
        "1.0,ESZ6,5000.00,5000.25,5000.25,3,4,2\n"
    )
    market = Market(SimConfig(replay_csv=csv))
    rows = load_replay_csv(csv)
    assert [r.offset for r in rows] == [0.0, 0.5, 1.0]
    for row in rows:
        market.apply_replay(row)
    aapl = market.quote("AAPL")
    assert (aapl.bid, aapl.ask, aapl.last, aapl.bid_size) == (180.0, 180.03, 180.01, 300)
    assert market.quote("ES").last == 5000.25


async def test_paced_market_ticks_and_pauses() -> None:
    market = Market(SimConfig(tick_rate=200), SimClock())
    counts = {"n": 0}
    market.add_listener(  # options re-priced after their underlying are not counted
        lambda inst, q: inst.sec_type != "OPT" and counts.__setitem__("n", counts["n"] + 1)
    )
    await market.start()
    try:
        for _ in range(200):
            if counts["n"] >= 12:
                break
            await asyncio.sleep(0.01)
        assert counts["n"] >= 12
        market.pause()
        await asyncio.sleep(0.02)
        frozen = counts["n"]
        await asyncio.sleep(0.05)
        assert counts["n"] == frozen
        market.step("AAPL")  # manual steps still work while paused
        assert counts["n"] == frozen + 1
        market.resume()
        for _ in range(200):
            if counts["n"] > frozen + 6:
                break
            await asyncio.sleep(0.01)
        assert counts["n"] > frozen + 6
    finally:
        await market.stop()


def test_config_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(
        "seed: 7\ntick_rate: max\nrate_limit: 20\nlive_data: [AAPL]\n"
        "instruments:\n"
        "  - {symbol: XYZ, sec_type: STK, con_id: 1, exchange: SMART, currency: USD,"
        " start_price: 10.0}\n"
    )
    cfg = SimConfig.from_yaml(path)
    assert cfg.seed == 7 and cfg.max_mode and cfg.rate_limit == 20
    assert cfg.instruments == (
        Instrument(
            symbol="XYZ",
            sec_type="STK",
            con_id=1,
            exchange="SMART",
            currency="USD",
            start_price=10.0,
        ),
    )
    assert not cfg.has_live_data(cfg.instruments[0])
    bad = tmp_path / "bad.yaml"
    bad.write_text("tick_rate: -3\n")
    with pytest.raises(ConfigError) as info:
        SimConfig.from_yaml(bad)
    assert info.value.key == "tick_rate"
    with pytest.raises(ConfigError):
        SimConfig.from_mapping({"no_such_setting": 1})

"""forceOrder (liquidations) and markPriceUpdate in read_capture, against the documented example messages.

Truth: the real forceOrder example of FORMATS.md and the markPriceUpdate example of Binance's docs, with
expected ticks and lots worked out by hand and by an independent ``Fraction`` oracle.
"""

from __future__ import annotations

import gzip
import json
import math
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSD_PERP, BTCUSDT
from deleverage.data.binance_stream import read_capture
from deleverage.data.records import (
    LIQUIDATION_DTYPE,
    LONG,
    MARK_PRICE_DTYPE,
    OFF_GRID,
    ORDER_CANCELED,
    ORDER_EXPIRED,
    ORDER_FILLED,
    ORDER_NEW,
    ORDER_PARTIALLY_FILLED,
    ORDER_STATUS_OTHER,
    SHORT,
    TIF_FOK,
    TIF_GTC,
    TIF_GTD,
    TIF_GTX,
    TIF_IOC,
    TIF_OTHER,
)
from deleverage.errors import DataError

MS = 1_000_000
T1, T2, T3 = 1_665_523_974_230_000_001, 1_665_523_974_230_000_002, 1_665_523_974_230_000_003
#: The real forceOrder example of FORMATS.md (BTCUSDT, 2022-10-11; prices with 2 decimals: tick 0.01 then).
FORCE = ('{"e":"forceOrder","E":1665523974222,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC",'
         '"q":"0.009","p":"18917.15","ap":"18990.00","X":"FILLED","l":"0.009","z":"0.009","T":1665523974217}}')
#: Binance's documented markPriceUpdate example (mark and index carry 8 decimals).
MARK = ('{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091",'
        '"P":"11784.25641265","r":"0.00038167","T":1562306400000}')
BTC_2022 = BTCUSDT.with_tick("0.01")


def wrap(stream: str, data: str) -> str:
    return f'{{"stream":"{stream}","data":{data}}}'


def write(folder: Path, lines: list[str], name: str = "cap.txt") -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_real_force_order_example_every_field(tmp_path: Path) -> None:
    cap = read_capture(write(tmp_path, [f"{T1} {wrap('btcusdt@forceOrder', FORCE)}"]), instrument=BTC_2022)
    liq = cap.liquidations
    assert liq.dtype == LIQUIDATION_DTYPE and len(liq) == 1
    row = liq[0]
    assert int(row["ts_local"]) == T1
    assert int(row["ts_event"]) == 1_665_523_974_222 * MS
    assert int(row["ts_transact"]) == 1_665_523_974_217 * MS
    assert int(row["price_ticks"]) == 1_891_715  # 18917.15 / 0.01
    assert int(row["avg_price_ticks"]) == 1_899_000  # 18990.00 / 0.01
    assert float(row["avg_price"]) == 18990.0
    assert (int(row["qty_lots"]), int(row["filled_lots"]), int(row["last_filled_lots"])) == (9, 9, 9)  # 0.009/0.001
    assert int(row["order_side"]) == -1 and int(row["position_side"]) == LONG  # SELL order: a long liquidated
    assert int(row["status"]) == ORDER_FILLED and int(row["time_in_force"]) == TIF_IOC
    assert cap.stats["liquidations"] == 1 and cap.stats["mark_prices"] == 0 and cap.skipped_lines == 0
    assert cap.mark_prices.dtype == MARK_PRICE_DTYPE and len(cap.mark_prices) == 0
    # the row's value at the order price, exact: 18917.15 × 0.009 USDT
    assert cap.instrument.notional(int(row["price_ticks"]), int(row["qty_lots"])) == Fraction("170.25435") * 10**8


def test_today_tick_refuses_the_2022_price_by_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, [f"{T1} {wrap('btcusdt@markPrice', MARK)}", f"{T2} {wrap('btcusdt@forceOrder', FORCE)}"])
    with pytest.raises(DataError) as info:
        read_capture(path)  # BTCUSDT tick 0.1: 18917.15 is between ticks
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, "data.o.p")
    assert "18917.15" in str(info.value)


def test_side_is_normalised_to_the_liquidated_position(tmp_path: Path) -> None:
    buy = FORCE.replace('"S":"SELL"', '"S":"BUY"')
    lines = [f"{T1} {wrap('btcusdt@forceOrder', FORCE)}", f"{T2} {wrap('btcusdt@forceOrder', buy)}"]
    liq = read_capture(write(tmp_path, lines), instrument=BTC_2022).liquidations
    assert liq["order_side"].tolist() == [-1, 1]
    assert liq["position_side"].tolist() == [LONG, SHORT]  # SELL → long liquidated, BUY → short liquidated


def test_off_grid_average_kept_as_float(tmp_path: Path) -> None:
    # today's BTCUSDT (tick 0.1): order price on the grid, an average fill of 18990.05 between ticks
    msg = FORCE.replace('"p":"18917.15"', '"p":"18917.1"').replace('"ap":"18990.00"', '"ap":"18990.05"')
    row = read_capture(write(tmp_path, [f"{T1} {wrap('btcusdt@forceOrder', msg)}"])).liquidations[0]
    assert int(row["price_ticks"]) == 189_171
    assert int(row["avg_price_ticks"]) == OFF_GRID and float(row["avg_price"]) == 18990.05


@pytest.mark.parametrize(
    ("status", "tif", "status_code", "tif_code"),
    [("NEW", "GTC", ORDER_NEW, TIF_GTC), ("PARTIALLY_FILLED", "FOK", ORDER_PARTIALLY_FILLED, TIF_FOK),
     ("CANCELED", "GTX", ORDER_CANCELED, TIF_GTX), ("EXPIRED", "GTD", ORDER_EXPIRED, TIF_GTD),
     ("NEW_INSURANCE", "XYZ", ORDER_STATUS_OTHER, TIF_OTHER)],
)
def test_status_and_time_in_force_codes(tmp_path: Path, status: str, tif: str, status_code: int,
                                        tif_code: int) -> None:
    msg = FORCE.replace('"X":"FILLED"', f'"X":"{status}"').replace('"f":"IOC"', f'"f":"{tif}"')
    row = read_capture(write(tmp_path, [f"{T1} {wrap('btcusdt@forceOrder', msg)}"]),
                       instrument=BTC_2022).liquidations[0]
    assert (int(row["status"]), int(row["time_in_force"])) == (status_code, tif_code)


def test_all_market_stream_object_list_and_raw_event(tmp_path: Path) -> None:
    partial = FORCE.replace('"X":"FILLED","l":"0.009","z":"0.009"', '"X":"PARTIALLY_FILLED","l":"0.002","z":"0.005"')
    lines = [f"{T1} {wrap('!forceOrder@arr', FORCE)}",
             f"{T2} {wrap('!forceOrder@arr', '[' + FORCE + ',' + partial + ']')}",
             f"{T3} {partial}"]  # a raw-stream event without the combined-stream wrapper
    cap = read_capture(write(tmp_path, lines), instrument=BTC_2022)
    liq = cap.liquidations
    assert liq["ts_local"].tolist() == [T1, T2, T2, T3]
    assert liq["filled_lots"].tolist() == [9, 9, 5, 5] and liq["last_filled_lots"].tolist() == [9, 9, 2, 2]
    assert liq["qty_lots"].tolist() == [9] * 4 and cap.stats["liquidations"] == 4


def test_mark_price_example_every_field(tmp_path: Path) -> None:
    lines = [f"{T1} {wrap('btcusdt@markPrice', MARK)}", f"{T2} {wrap('btcusdt@markPrice@1s', MARK)}",
             f"{T3} {wrap('!markPrice@arr@1s', '[' + MARK + ']')}"]
    path = write(tmp_path, lines)
    marks = read_capture(path).mark_prices  # tick 0.1: 11794.15 is between ticks
    assert marks.dtype == MARK_PRICE_DTYPE and marks["ts_local"].tolist() == [T1, T2, T3]
    row = marks[0]
    assert int(row["ts_event"]) == 1_562_305_380_000 * MS
    assert int(row["next_funding_ts"]) == 1_562_306_400_000 * MS
    assert int(row["mark_price_ticks"]) == OFF_GRID and float(row["mark_price"]) == 11794.15
    assert float(row["index_price"]) == 11784.62659091 and float(row["settle_price"]) == 11784.25641265
    assert float(row["funding_rate"]) == 0.00038167
    assert read_capture(path, instrument=BTC_2022).mark_prices["mark_price_ticks"].tolist() == [1_179_415] * 3


def test_mark_price_empty_markers_and_negative_funding(tmp_path: Path) -> None:
    delivery = MARK.replace('"P":"11784.25641265"', '"P":""').replace('"r":"0.00038167"', '"r":""').replace(
        '"T":1562306400000', '"T":0')
    negative = MARK.replace('"r":"0.00038167"', '"r":"-0.00012500"').replace('"p":"11794.15000000"', '"p":"11794.1"')
    marks = read_capture(write(tmp_path, [f"{T1} {wrap('btcusdt@markPrice', delivery)}",
                                          f"{T2} {wrap('btcusdt@markPrice', negative)}"])).mark_prices
    assert math.isnan(marks[0]["settle_price"]) and math.isnan(marks[0]["funding_rate"])
    assert int(marks[0]["next_funding_ts"]) == 0
    assert float(marks[1]["funding_rate"]) == -0.000125 and int(marks[1]["mark_price_ticks"]) == 117_941


@pytest.mark.parametrize(
    ("stream", "bad", "field"),
    [
        ("btcusdt@forceOrder", FORCE.replace('"p":"18917.15",', ""), "data.o.p"),
        ("btcusdt@forceOrder", FORCE.replace('"S":"SELL"', '"S":"HOLD"'), "data.o.S"),
        ("btcusdt@forceOrder", FORCE.replace('"S":"SELL"', '"S":1'), "data.o.S"),
        ("btcusdt@forceOrder", FORCE.replace('"q":"0.009"', '"q":"0.0095"'), "data.o.q"),  # off the lot grid
        ("btcusdt@forceOrder", FORCE.replace('"q":"0.009"', '"q":"-0.009"'), "data.o.q"),
        ("btcusdt@forceOrder", FORCE.replace('"ap":"18990.00"', '"ap":"abc"'), "data.o.ap"),
        ("btcusdt@forceOrder", FORCE.replace('"ap":"18990.00"', '"ap":"NaN"'), "data.o.ap"),
        ("btcusdt@forceOrder", FORCE.replace('"ap":"18990.00"', '"ap":true'), "data.o.ap"),
        ("btcusdt@forceOrder", FORCE.replace('"p":"18917.15"', '"p":"0"'), "data.o.p"),
        ("btcusdt@forceOrder", FORCE.replace('"z":"0.009"', '"z":"0.010"'), "data.o.z"),  # filled > original
        ("btcusdt@forceOrder", FORCE.replace('"l":"0.009"', '"l":"0.010"'), "data.o.l"),  # last > filled
        ("btcusdt@forceOrder", FORCE.replace('"E":1665523974222', '"E":"1665523974222"'), "data.E"),
        ("btcusdt@forceOrder", FORCE.replace('"T":1665523974217', '"T":null'), "data.o.T"),
        ("btcusdt@forceOrder", FORCE.replace('"e":"forceOrder"', '"e":"trade"'), "data.e"),
        ("btcusdt@forceOrder", '{"e":"forceOrder","E":1,"o":[]}', "data.o"),
        ("!forceOrder@arr", f"[{FORCE}, 3]", "data[1]"),
        ("!forceOrder@arr", f"[{FORCE}, {FORCE.replace('0.009', '0.0001')}]", "data[1].o.q"),
        ("btcusdt@markPrice", MARK.replace('"i":"11784.62659091",', ""), "data.i"),
        ("btcusdt@markPrice", MARK.replace('"r":"0.00038167"', '"r":"x"'), "data.r"),
        ("btcusdt@markPrice", MARK.replace('"p":"11794.15000000"', '"p":"0"'), "data.p"),
        ("btcusdt@markPrice", MARK.replace('"T":1562306400000', '"T":1.5'), "data.T"),
    ],
)
def test_malformed_event_names_path_line_and_field(tmp_path: Path, stream: str, bad: str, field: str) -> None:
    path = write(tmp_path, [f"{T1} {wrap(stream, FORCE if 'force' in stream else MARK)}", f"{T2} {wrap(stream, bad)}"])
    with pytest.raises(DataError) as info:
        read_capture(path, instrument=BTC_2022)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, field)
    assert f"{path}:2" in str(info.value)


def test_mixed_symbols_refused(tmp_path: Path) -> None:
    eth = FORCE.replace('"s":"BTCUSDT"', '"s":"ETHUSDT"')
    with pytest.raises(DataError, match="mixes symbols"):
        read_capture(write(tmp_path, [f"{T1} {wrap('!forceOrder@arr', FORCE)}", f"{T2} {wrap('!forceOrder@arr', eth)}"]),
                     instrument=BTC_2022)
    with pytest.raises(DataError, match="mixes symbols"):
        read_capture(write(tmp_path, [f"{T1} {wrap('btcusdt@forceOrder', FORCE)}",
                                      f"{T2} {wrap('ethusdt@markPrice', MARK.replace('BTCUSDT', 'ETHUSDT'))}"]),
                     instrument=BTC_2022)


@pytest.mark.parametrize(
    "name",
    ["binance-usdm/btcusdt_20240808.gz", "binance-usdm/ethusdt_20240808.gz",
     "binance-coinm/btcusd_perp_20240808.gz", "binance-coinm/btcusd_perp_20240809.gz"],
)
def test_bundled_captures_have_no_liquidations(shared_data: Path, name: str) -> None:
    cap = read_capture(shared_data / name)
    assert cap.liquidations.dtype == LIQUIDATION_DTYPE and len(cap.liquidations) == 0
    assert cap.mark_prices.dtype == MARK_PRICE_DTYPE and len(cap.mark_prices) == 0
    s = cap.stats
    assert s["liquidations"] == s["mark_prices"] == cap.skipped_lines == 0
    assert s["depth_events"] + s["trades"] + s["book_tickers"] + s["snapshots"] == cap.lines


def test_interleaved_events_leave_the_other_streams_unchanged(shared_data: Path, tmp_path: Path) -> None:
    """Real COIN-M lines with a liquidation and a mark update spliced in: the book streams parse identically."""
    with gzip.open(shared_data / "binance-coinm/btcusd_perp_20240808.gz", "rt") as fh:
        real = [next(fh).rstrip("\n") for _ in range(400)]
    ts = int(real[200].split(" ", 1)[0])
    coin_force = (FORCE.replace('"s":"BTCUSDT"', '"s":"BTCUSD_PERP","ps":"BTCUSD"').replace("0.009", "12")
                  .replace('"p":"18917.15"', '"p":"56000.1"').replace('"ap":"18990.00"', '"ap":"56010.37"'))
    coin_mark = MARK.replace("BTCUSDT", "BTCUSD_PERP")
    spliced = [*real[:200], f"{ts} {wrap('btcusd_perp@forceOrder', coin_force)}",
               f"{ts} {wrap('btcusd_perp@markPrice@1s', coin_mark)}", *real[200:]]
    plain = read_capture(write(tmp_path, real, "plain.txt"))
    mixed = read_capture(write(tmp_path, spliced, "mixed.txt"))
    assert mixed.instrument is BTCUSD_PERP
    for name in ("depth", "trades", "book_tickers"):
        assert np.array_equal(getattr(plain, name), getattr(mixed, name))
    liq = mixed.liquidations
    assert liq[["price_ticks", "avg_price_ticks", "qty_lots", "filled_lots"]].tolist() == [
        (560_001, OFF_GRID, 12, 12)]  # contracts, lot 1; 56010.37 is between 0.1 ticks
    assert float(liq["avg_price"][0]) == 56010.37 and mixed.stats["mark_prices"] == 1


def ticks_oracle(text: str, tick: str) -> int:
    """Exact tick count with Fraction, OFF_GRID when between ticks (independent of the reader's Decimal)."""
    ratio = Fraction(text) / Fraction(tick)
    return ratio.numerator if ratio.denominator == 1 else OFF_GRID


@given(
    price_ticks=st.integers(1, 10**9),
    avg_hundredths=st.integers(0, 10**10),
    qty_lots=st.integers(1, 10**7),
    filled=st.integers(0, 10**7),
    side=st.sampled_from(["BUY", "SELL"]),
)
def test_random_orders_match_fraction_oracle(price_ticks: int, avg_hundredths: int, qty_lots: int, filled: int,
                                             side: str) -> None:
    filled = min(filled, qty_lots)
    price = f"{price_ticks // 10}.{price_ticks % 10}"  # tick 0.1
    avg = f"{avg_hundredths // 100}.{avg_hundredths % 100:02d}"  # two decimals: on or between 0.1 ticks
    qty, fill = (f"{lots // 1000}.{lots % 1000:03d}" for lots in (qty_lots, filled))  # lot 0.001
    order = {"s": "BTCUSDT", "S": side, "o": "LIMIT", "f": "IOC", "q": qty, "p": price, "ap": avg, "X": "FILLED",
             "l": fill, "z": fill, "T": 1}
    msg = json.dumps({"e": "forceOrder", "E": 2, "o": order})
    with tempfile.TemporaryDirectory() as folder:
        row = read_capture(write(Path(folder), [f"{T1} {wrap('btcusdt@forceOrder', msg)}"])).liquidations[0]
    assert int(row["price_ticks"]) == price_ticks
    assert int(row["avg_price_ticks"]) == ticks_oracle(avg, "0.1")
    assert float(row["avg_price"]) == float(avg)
    assert (int(row["qty_lots"]), int(row["filled_lots"])) == (qty_lots, filled)
    assert int(row["position_side"]) == (LONG if side == "SELL" else SHORT) == -int(row["order_side"])

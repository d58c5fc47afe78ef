"""read_capture against an independent json + Decimal oracle, on real and doctored captures."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from deleverage.core.instruments import BTCUSD_PERP, BTCUSDT
from deleverage.data.binance_stream import read_capture
from deleverage.data.records import ASK, BID, NO_SIDE
from deleverage.errors import DataError

USDM = "binance-usdm/btcusdt_20240808.gz"


def oracle(lines: list[str], tick: Decimal, lot: Decimal) -> dict[str, list[tuple[int, ...]]]:
    """Brute-force parse with json and Decimal: exact ticks and lots, one tuple per row."""
    out: dict[str, list[tuple[int, ...]]] = {"depth": [], "trades": [], "tickers": [], "snapshots": []}

    def units(text: str, unit: Decimal) -> int:
        value = Decimal(text) / unit
        assert value == value.to_integral_value()
        return int(value)

    for line in lines:
        ts_text, body = line.split(" ", 1)
        ts_local, msg = int(ts_text), json.loads(body)
        if "stream" not in msg:
            out["snapshots"].append((msg["lastUpdateId"], len(msg["bids"]), units(msg["bids"][0][0], tick)))
            continue
        d = msg["data"]
        if msg["stream"].endswith("@trade"):
            out["trades"].append((ts_local, d["E"] * 10**6, d["t"], units(d["p"], tick), units(d["q"], lot),
                                  -1 if d["m"] else 1))
        elif msg["stream"].endswith("@bookTicker"):
            out["tickers"].append((d["u"], units(d["b"], tick), units(d["B"], lot), units(d["a"], tick),
                                   units(d["A"], lot)))
        else:
            for key, side in (("b", BID), ("a", ASK)):
                for price, qty in d[key]:
                    out["depth"].append((ts_local, d["T"] * 10**6, d["U"], d["u"], d["pu"], side,
                                         units(price, tick), units(qty, lot)))
    return out


@pytest.fixture(scope="module")
def head_file(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The first 3,000 lines of the real BTCUSDT capture (snapshot included), as a plain text file."""
    with gzip.open(shared_data / USDM, "rt") as fh:
        lines = [next(fh).rstrip("\n") for _ in range(3000)]
    path = tmp_path_factory.mktemp("cap") / "head.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, lines


def test_real_capture_matches_decimal_oracle(head_file: tuple[Path, list[str]]) -> None:
    path, lines = head_file
    cap = read_capture(path)
    truth = oracle(lines, BTCUSDT.tick_size, BTCUSDT.lot_size)
    d = cap.depth
    got_depth = list(zip(d["ts_local"].tolist(), d["ts_transact"].tolist(), d["first_update_id"].tolist(),
                         d["last_update_id"].tolist(), d["prev_update_id"].tolist(), d["side"].tolist(),
                         d["price_ticks"].tolist(), d["qty_lots"].tolist(), strict=True))
    assert got_depth == truth["depth"]
    t = cap.trades
    assert list(zip(t["ts_local"].tolist(), t["ts_event"].tolist(), t["trade_id"].tolist(),
                    t["price_ticks"].tolist(), t["qty_lots"].tolist(), t["taker_side"].tolist(),
                    strict=True)) == truth["trades"]
    b = cap.book_tickers
    assert list(zip(*(b[f].tolist() for f in ("update_id", "bid_price_ticks", "bid_qty_lots",
                                              "ask_price_ticks", "ask_qty_lots")), strict=True)) == truth["tickers"]
    snap = cap.snapshot
    assert snap is not None and snap.line == 55
    assert [(snap.last_update_id, len(snap.bids), int(snap.bids["price_ticks"][0]))] == truth["snapshots"]
    assert (np.diff(snap.bids["price_ticks"]) < 0).all() and (np.diff(snap.asks["price_ticks"]) > 0).all()


def test_whole_files_count_every_line(shared_data: Path) -> None:
    cap = read_capture(shared_data / USDM)
    s = cap.stats
    assert s["depth_events"] + s["trades"] + s["book_tickers"] + s["snapshots"] == cap.lines == 93_954
    assert (s["depth_events"], s["trades"], s["book_tickers"]) == (6551, 21313, 66089)
    coin = read_capture(shared_data / "binance-coinm/btcusd_perp_20240809.gz")
    assert coin.instrument is BTCUSD_PERP and coin.snapshot is None  # only the first file has one
    assert coin.depth["qty_lots"].max() > 1000  # contracts of 100 USD, lot 1


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "cap.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


T1, T2 = 1_723_161_255_000_000_001, 1_723_161_255_000_000_002  # receive times, ns (19 digits)
DEPTH = ('{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT",'
         '"U":10,"u":12,"pu":9,"b":[["100.0","1.000"]],"a":[["100.1","0.500"]]}}')


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ('{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate"', "json"),
        (DEPTH.replace('"u":12,', ""), "data.u"),
        (DEPTH.replace('"U":10', '"U":"10"'), "data.U"),
        (DEPTH.replace('"100.0"', '"abc"'), "data.b[0][0]"),
        (DEPTH.replace('"100.0"', '"100.05"'), "data.b[0][0]"),  # off the 0.1 grid
        (DEPTH.replace('"0.500"', '"0.0005"'), "data.a[0][1]"),  # off the 0.001 lot grid
        (DEPTH.replace('"0.500"', '"-1"'), "data.a[0][1]"),
        (DEPTH.replace('["100.0","1.000"]', '["100.0"]'), "data.b[0]"),
    ],
)
def test_malformed_line_names_path_line_and_field(tmp_path: Path, bad: str, field: str) -> None:
    path = _write(tmp_path, [f"{T1} {DEPTH}", f"{T2} {bad}"])
    with pytest.raises(DataError) as info:
        read_capture(path)
    assert (info.value.line, info.value.field, info.value.path) == (2, field, str(path))
    assert f"{path}:2" in str(info.value)


def test_bad_timestamp_and_mixed_symbols(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ts_local"):
        read_capture(_write(tmp_path, [f"x1 {DEPTH}"]))
    with pytest.raises(DataError, match="digits"):  # 1 digit: not a ms, µs or ns epoch time
        read_capture(_write(tmp_path, [f"1 {DEPTH}"]))
    with pytest.raises(DataError, match="mixes symbols"):
        read_capture(_write(tmp_path, [f"{T1} {DEPTH}", f"{T2} {DEPTH.replace('BTCUSDT', 'ETHUSDT')}"]))


def test_empty_event_keeps_its_ids_as_a_marker_row(tmp_path: Path) -> None:
    empty = (DEPTH.replace('[["100.0","1.000"]]', "[]").replace('[["100.1","0.500"]]', "[]")
             .replace('"U":10,"u":12,"pu":9', '"U":13,"u":14,"pu":12'))
    cap = read_capture(_write(tmp_path, [f"{T1} {DEPTH}", f"{T2} {empty}"]), instrument="BTCUSDT")
    assert cap.depth["side"].tolist() == [BID, ASK, NO_SIDE]
    assert cap.depth["last_update_id"].tolist() == [12, 12, 14]
    assert cap.depth["price_ticks"].tolist() == [1000, 1001, 0]


def test_unknown_stream_is_counted_not_parsed(tmp_path: Path) -> None:
    kline = '{"stream":"btcusdt@kline_1m","data":{"e":"kline","k":{"o":"1"}}}'
    partial = '{"stream":"btcusdt@depth5@100ms","data":{"e":"depthUpdate","b":[]}}'
    cap = read_capture(_write(tmp_path, [f"{T1} {DEPTH}", f"{T2} {kline}", f"{T2} {partial}"]))
    assert cap.skipped_lines == 2 and len(cap.depth) == 2
    assert len(cap.liquidations) == len(cap.mark_prices) == 0


# --- the instrument of a capture: its "s" field, the tick of its era, never another symbol -----------------

T2020 = 1_583_971_200_000_000_000  # 2020-03-12: BTCUSDT's tick was 0.01
T2023 = 1_672_531_200_000_000_000  # no BTCUSDT tick on record for this date
FINE = DEPTH.replace('"100.0"', '"100.05"')


def test_a_capture_gets_the_tick_of_its_era(tmp_path: Path) -> None:
    from decimal import Decimal

    cap = read_capture(_write(tmp_path, [f"{T2020} {FINE}"]))
    assert cap.instrument.tick_size == Decimal("0.01") and cap.depth["price_ticks"][0] == 10_005
    gap = read_capture(_write(tmp_path, [f"{T2023} {DEPTH}"]))  # fits 0.1, the coarsest known tick
    assert gap.instrument.tick_size == Decimal("0.1")
    finer = read_capture(_write(tmp_path, [f"{T2023} {FINE}"]))  # does not: the data decides, with a note
    assert finer.instrument.tick_size == Decimal("0.01") and finer.choice.notes


def test_a_capture_of_an_unknown_symbol_is_inferred_and_a_contradicting_symbol_refused(tmp_path: Path) -> None:
    from decimal import Decimal

    sol = DEPTH.replace("BTCUSDT", "SOLUSDT").replace('"100.0"', '"142.355"').replace('"100.1"', '"142.36"')
    cap = read_capture(_write(tmp_path, [f"{T1} {sol}"]))
    assert cap.instrument.symbol == "SOLUSDT" and cap.instrument.tick_size == Decimal("0.005")
    assert any("inferred" in note for note in cap.choice.notes)
    with pytest.raises(DataError, match="never replays as another"):
        read_capture(_write(tmp_path, [f"{T1} {DEPTH}"]), "ETHUSDT")


def test_replay_problems_name_a_missing_snapshot_and_update_gaps(tmp_path: Path) -> None:
    from deleverage.data.binance_stream import replay_problems

    snapshot = '{"lastUpdateId":11,"E":1,"T":1,"bids":[["100.0","1.000"]],"asks":[["100.1","1.000"]]}'
    trade = '{"stream":"btcusdt@trade","data":{"E":1,"T":1,"s":"BTCUSDT","t":1,"p":"100.0","q":"0.001","X":"MARKET","m":true}}'
    later = DEPTH.replace('"U":10,"u":12,"pu":9', '"U":13,"u":14,"pu":12')
    gapped = DEPTH.replace('"U":10,"u":12,"pu":9', '"U":16,"u":17,"pu":15')
    assert replay_problems(read_capture(_write(tmp_path, [f"{T1} {snapshot}", f"{T1} {DEPTH}", f"{T2} {later}",
                                                          f"{T2} {trade}"]))) == []
    no_snapshot = replay_problems(read_capture(_write(tmp_path, [f"{T1} {DEPTH}", f"{T2} {trade}"])))
    assert len(no_snapshot) == 1 and "no depth snapshot" in no_snapshot[0]
    gaps = replay_problems(read_capture(_write(tmp_path, [f"{T1} {snapshot}", f"{T1} {DEPTH}", f"{T2} {gapped}",
                                                          f"{T2} {trade}"])))
    assert len(gaps) == 1 and "1 gap" in gaps[0]
    assert any("no trades" in p for p in replay_problems(read_capture(_write(tmp_path, [f"{T1} {snapshot}",
                                                                                        f"{T1} {DEPTH}"]))))

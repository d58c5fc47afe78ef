"""Format detection on every supported kind, and the parquet cache (hit on the second read)."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import pytest

from deleverage.data.detect import detect_format, load
from deleverage.data.klines import KLINE_COLUMNS
from deleverage.data.public import AGG_TRADES_COLUMNS, BOOK_TICKER_COLUMNS, METRICS_COLUMNS
from deleverage.data.tardis import INCREMENTAL_L2_COLUMNS, LIQUIDATIONS_COLUMNS
from deleverage.errors import DataError

KLINE = "1621382400000,42882.54,43156.34,42870.89,42962.73,1009.048,1621382459999,1.0,1,1.0,1.0,0"


def text_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("k.csv", KLINE + "\n", "binance_klines"),
        ("kh.csv", ",".join(KLINE_COLUMNS) + "\n" + KLINE + "\n", "binance_klines"),
        ("a.csv", "1,100.0,1.0,1,2,1665523974217,true\n", "binance_agg_trades"),
        ("a2.csv", ",".join(AGG_TRADES_COLUMNS) + "\n", "binance_agg_trades"),
        ("t.csv", "1,100.0,1.0,100.0,1665523974217,false\n", "binance_trades"),
        ("b.csv", ",".join(BOOK_TICKER_COLUMNS) + "\n", "binance_book_ticker"),
        ("m.csv", ",".join(METRICS_COLUMNS) + "\n", "binance_metrics"),
        ("l2.csv", ",".join(INCREMENTAL_L2_COLUMNS) + "\n", "tardis_incremental_book_L2"),
        ("okex_trades.csv", ",".join(LIQUIDATIONS_COLUMNS) + "\n", "tardis_trades"),
        ("okex_liquidations.csv", ",".join(LIQUIDATIONS_COLUMNS) + "\n", "tardis_liquidations"),
        ("pop.csv", "account_id,side,qty,entry_price,leverage\n", "population_csv"),
        ("p.json", json.dumps([{"contracts": 1, "side": "long", "entryPrice": 1}]), "ccxt_positions"),
        ("cap.txt", '1723161255000000000 {"lastUpdateId": 1}\n', "binance_capture"),
    ],
)
def test_detects_each_format(tmp_path: Path, name: str, content: str, expected: str) -> None:
    assert detect_format(text_file(tmp_path / name, content)) == expected


def test_detects_through_gzip_and_zip(tmp_path: Path) -> None:
    gz = tmp_path / "k.csv.gz"
    gz.write_bytes(gzip.compress((KLINE + "\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("BTCUSDT-1m-2021-05-19.csv", KLINE + "\n")
    zipped = tmp_path / "BTCUSDT-1m-2021-05-19.zip"
    zipped.write_bytes(buffer.getvalue())
    assert detect_format(gz) == detect_format(zipped) == "binance_klines"
    assert load(zipped, use_cache=False).frame["open"][0] == 42882.54


def test_unknown_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unrecognised header"):
        detect_format(text_file(tmp_path / "x.csv", "foo,bar\n1,2\n"))
    with pytest.raises(DataError, match="without a header"):
        detect_format(text_file(tmp_path / "y.csv", "1,2,3\n"))
    with pytest.raises(DataError, match="file not found"):
        detect_format(tmp_path / "nothing.csv")
    with pytest.raises(DataError, match="empty"):
        detect_format(text_file(tmp_path / "z.csv", ""))


@pytest.mark.realdata
def test_cache_hit_returns_the_same_frame(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "binance-usdm-klines" / "BTCUSDT-1m-2025-10-10.csv"
    first = load(path, cache_dir=tmp_path)
    second = load(path, cache_dir=tmp_path)
    assert (first.meta["cache"], second.meta["cache"]) == ("miss", "hit")
    assert first.frame.equals(second.frame)
    assert second.quality.as_dict() == first.quality.as_dict() and second.time_unit == "ms"
    assert len(list(tmp_path.glob("*.parquet"))) == 1
    # options are part of the key
    assert load(path, cache_dir=tmp_path, qty_unit="contracts").meta["cache"] == "miss"


def test_cache_key_follows_content_not_name(tmp_path: Path) -> None:
    a = text_file(tmp_path / "a.csv", KLINE + "\n")
    b = text_file(tmp_path / "b.csv", KLINE + "\n")
    cache = tmp_path / "cache"
    assert load(a, cache_dir=cache).meta["cache"] == "miss"
    assert load(b, cache_dir=cache).meta["cache"] == "hit"
    a.write_text(KLINE.replace("42882.54", "42882.55") + "\n")
    reread = load(a, cache_dir=cache)
    assert reread.meta["cache"] == "miss" and reread.frame["open"][0] == 42882.55

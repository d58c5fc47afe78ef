"""ccxt Position lists → population frames; coercion of str/float numbers; errors by element."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deleverage.data.ccxt import positions_from_ccxt, read_ccxt_positions
from deleverage.errors import DataError


def position(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "info": {}, "symbol": "BTC/USDT:USDT", "id": None, "contracts": "0.5", "contractSize": 1.0,
        "side": "long", "entryPrice": 120000.0, "leverage": 20, "collateral": None,
        "marginMode": "isolated", "markPrice": "119000.0", "liquidationPrice": None,
        "maintenanceMarginPercentage": 0.004,
    }
    base.update(overrides)
    return base


def test_numbers_as_strings_and_derived_collateral() -> None:
    frame = positions_from_ccxt([position(), position(side="short", leverage=None, collateral="3000",
                                                      contracts=10, contractSize=0.001)])
    assert frame["side"].to_list() == ["long", "short"]
    assert frame["qty"].to_list() == [0.5, 0.01]
    assert frame["collateral"][0] == pytest.approx(0.5 * 120000 / 20)  # notional / leverage
    assert frame["leverage"][1] == pytest.approx(10 * 0.001 * 120000 / 3000)
    assert frame["mark_price"][0] == 119000.0 and frame["liquidation_price"][0] is None
    assert frame["margin_mode"].to_list() == ["isolated", "isolated"]


def test_file_errors_name_element_field_and_line(tmp_path: Path) -> None:
    items = [position(), position(entryPrice="abc")]
    path = tmp_path / "positions.json"
    path.write_text(json.dumps(items, indent=2))
    with pytest.raises(DataError) as info:
        read_ccxt_positions(path)
    assert info.value.field == "positions[1].entryPrice"
    lines = json.dumps(items, indent=2).splitlines()
    expected_line = [n for n, text in enumerate(lines, start=1) if text == "  {"][1]
    assert info.value.line == expected_line
    path.write_text('[{"contracts": 1,\n "side": "long",,}]')
    with pytest.raises(DataError) as info:
        read_ccxt_positions(path)
    assert info.value.line == 2


def test_bad_side_margin_mode_and_missing_leverage() -> None:
    with pytest.raises(DataError, match="'flat'"):
        positions_from_ccxt([position(side="flat")])
    with pytest.raises(DataError, match="marginMode"):
        positions_from_ccxt([position(marginMode="portfolio")])
    with pytest.raises(DataError, match="leverage or collateral"):
        positions_from_ccxt([position(leverage=None, collateral=None)])
    with pytest.raises(DataError, match="must be > 0"):
        positions_from_ccxt([position(contracts=0)])
    with pytest.raises(DataError, match="not a number"):
        positions_from_ccxt([position(leverage=True)])


def test_wrapped_document(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"positions": [position()]}))
    assert read_ccxt_positions(path).height == 1

"""Same seed → byte-identical pages: the replay report (fixed figure ids, gzip with mtime 0) and the
algos page (a fixed plotly div id instead of plotly's random UUID). Truth: two independent runs."""

from __future__ import annotations

import pytest

from deleverage.cli import main


def _cli(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code in (0, None)


@pytest.mark.slow
def test_the_same_stress_run_writes_the_same_bytes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DELEVERAGE_PROGRESS", "off")
    for name in ("a", "b"):
        _cli(["stress", "--accounts", "200", "--minutes", "5", "--workers", "1", "--policy", "binance,fba",
              "--out", str(tmp_path / name)])
    for file in ("report.html", "summary.json", "liquidations.parquet", "events.parquet"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


@pytest.mark.slow
def test_the_algos_page_is_byte_identical(tmp_path) -> None:
    for name in ("a", "b"):
        _cli(["algos", "--out", str(tmp_path / name)])
    page = (tmp_path / "a" / "execution_comparison.html").read_bytes()
    assert page == (tmp_path / "b" / "execution_comparison.html").read_bytes()
    assert b'id="execution-comparison"' in page

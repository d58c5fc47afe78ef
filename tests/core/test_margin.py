"""Liquidation and bankruptcy prices, margin ratio and ledger versions against published examples,
closed forms, a brute-force bracket search and Hypothesis invariants."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSD_PERP, BTCUSDT, ETHUSDT
from deleverage.core.margin import (
    MarginTiers,
    bankruptcy_price,
    initial_margin,
    initial_margin_minor,
    liquidation_price,
    liquidation_price_fraction,
    liquidation_triggered,
    maintenance_margin,
    maintenance_margin_entry_minor,
    maintenance_margin_minor,
    margin_ratio,
    position_notional,
    unrealized_pnl,
    unrealized_pnl_minor,
)
from deleverage.errors import InvalidInput

CENT = Decimal("0.01")


def _q(value: Decimal, places: Decimal = CENT) -> Decimal:
    return value.quantize(places)


# --- published worked examples -------------------------------------------------------------------


def test_binance_cross_example() -> None:
    """Binance USDⓈ-M, cross: wallet 500 USDT, long 0.02 BTC at 50,000, rate 0.4 % → 25,100.40.

    Formula: Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts"
    (binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93):
    LP = (WB − TMM1 + UPNL1 + cumB − Side·Position·EP) / (Position·MMR − Side·Position).
    """
    lp = liquidation_price(
        side="long", qty="0.02", entry_price=50_000, wallet_balance=500,
        tiers=MarginTiers.load("binance-btcusdt"),
    )
    assert _q(lp) == Decimal("25100.40")
    assert _q(liquidation_price(
        side="long", qty=0.02, entry_price="50000", wallet_balance=Decimal(500),
        tiers=MarginTiers.flat("0.004"),
    )) == Decimal("25100.40")


def test_binance_cross_with_other_positions_matches_formula() -> None:
    """Same FAQ, with TMM1 and UPNL1 of other positions: LP moves by (UPNL1 − TMM1)/(q·(MMR − 1))."""
    lp = liquidation_price(
        side="long", qty="0.02", entry_price=50_000, wallet_balance=500,
        tiers=MarginTiers.flat("0.004"), other_maintenance=30, other_unrealized_pnl=-70,
    )
    expected = (Decimal(500) - 30 - 70 - Decimal("0.02") * 50_000) / (Decimal("0.02") * Decimal("0.004") - Decimal("0.02"))
    assert _q(lp, Decimal("0.000001")) == _q(expected, Decimal("0.000001"))


def test_bybit_usdt_isolated_examples() -> None:
    """Bybit "Liquidation Price (USDT Contract)", isolated, example 1: long 1 BTC at 20,000, 50×,
    MMR 0.5 %: IM 400, MM 100, LP = 20,000 − (400 − 100) = 19,700.
    Source: testnet.bybit.com/en-US/help-center/s/article/Liquidation-Price-USDT-Contract.
    Bybit charges maintenance on the entry value, hence ``maintenance_basis="entry"``.
    """
    lp = liquidation_price(
        side="long", qty=1, entry_price=20_000, wallet_balance=400,
        tiers=MarginTiers.load("bybit-btcusdt"), maintenance_basis="entry",
    )
    assert lp == Decimal(19_700)
    short = liquidation_price(
        side="short", qty=1, entry_price=20_000, wallet_balance=400,
        tiers=MarginTiers.flat("0.005"), maintenance_basis="entry",
    )
    assert short == Decimal(20_300)  # the formula's mirror: EP + (IM − MM)/size


def test_bybit_bankruptcy_price_example() -> None:
    """Bybit "What is bankruptcy price": long 1 BTC at 10,000 USDT, 50× → 10,000 × (1 − 2 %) = 9,800.
    Source: mobie.io/faq/what-is-bybits-bankruptcy-price-how-can-i-calculate-it (Bybit help text).
    """
    assert bankruptcy_price(side="long", qty=1, entry_price=10_000, wallet_balance=200) == Decimal(9_800)
    assert bankruptcy_price(side="short", qty=1, entry_price=10_000, wallet_balance=200) == Decimal(10_200)


def test_bybit_inverse_isolated_example() -> None:
    """Bybit "Liquidation Price Calculation under Isolated Mode (UTA)", inverse: long 60,000 USD of
    BTCUSD at 50,000, 10×, MMR 0.5 %: position value 1.2 BTC, IM 0.12 BTC, MM 0.006 BTC,
    LP = 60,000 / (1.2 + 0.12 − 0.006) = 45,662.10.
    Source: testnet.bybit.com/ar-SA/help-center/article/Liquidation-Price-Calculation-under-Isolated-Mode-Unified-Trading-Account
    (the stored copy cuts off before the final figure; 45,662.10 is the page's formula evaluated).
    """
    lp = liquidation_price(
        side="long", qty=60_000, entry_price=50_000, wallet_balance="0.12",
        tiers=MarginTiers.flat("0.005"), contract="inverse", maintenance_basis="entry",
    )
    assert _q(lp) == Decimal("45662.10")


def test_bybit_inverse_cross_example_formula() -> None:
    """Bybit "How to calculate Liquidation Price (Inverse Contract)", cross: balance 0.5 BTC, long
    10,000 contracts at 8,000, MM 0.5 % of entry value, fee to close 0.075 % at the bankruptcy
    price 5,718.57. Source: help.bybit.com/hc/en-us/articles/360039261334.
    The page's own equation, 10000·(1/8000 − 1/LP) = −(0.5 − 10000/8000·0.5 % − 10000·0.00075/5718.57),
    evaluates to 5,739.08; the page prints 5,739.50, which that equation does not give (page
    inconsistency, reported). The fee term is passed as other maintenance.
    """
    fee_to_close = Fraction(10_000) * Fraction("0.00075") / Fraction("5718.57")
    lp = liquidation_price(
        side="long", qty=10_000, entry_price=8_000, wallet_balance="0.5",
        tiers=MarginTiers.flat("0.005"), contract="inverse", maintenance_basis="entry",
        other_maintenance=fee_to_close,
    )
    assert _q(lp) == Decimal("5739.08")


def test_dydx_v4_isolated_example() -> None:
    """dYdX v4 docs, "Isolated Liquidation Price": p' = (e − s·p)/(|s|·MMF − s); deposit 1,000,
    short 3 ETH at 3,000, MMF 5 % → (1000 + 9000)/(0.15 + 3) = 3,174.60.
    Source: dydx-documentation-six.vercel.app/concepts/trading/liquidations (v4 docs mirror;
    the stored copy cuts off before the final figure).
    """
    lp = liquidation_price(
        side="short", qty=3, entry_price=3_000, wallet_balance=1_000, tiers=MarginTiers.flat("0.05"),
    )
    assert _q(lp) == Decimal("3174.60")


@given(
    side=st.sampled_from(["long", "short"]),
    size=st.integers(1, 10_000),
    entry=st.integers(1_000, 200_000),
    mark=st.integers(1_000, 200_000),
    leverage=st.integers(1, 40),
)
def test_hyperliquid_formula(side: str, size: int, entry: int, mark: int, leverage: int) -> None:
    """Hyperliquid docs (trading/liquidations): liq_price = price − side·margin_available /
    position_size / (1 − l·side), l = 1/maintenance leverage (80 for BTC's 40× tier),
    margin_available = account value − maintenance margin at ``price``.
    Source: hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations (also docs.hyena.trade).
    """
    q = Fraction(size, 1000)
    assume(q * max(entry, mark) < 150_000_000)  # stay in the 40× tier
    s = 1 if side == "long" else -1
    wallet = q * entry / leverage
    account_value = wallet + s * q * (mark - entry)
    lev_l = Fraction(1, 80)
    margin_available = account_value - lev_l * q * mark
    expected = mark - s * margin_available / q / (1 - lev_l * s)
    assume(expected > 0)
    got = liquidation_price_fraction(
        side=side, qty=q, entry_price=entry, wallet_balance=wallet, tiers="hyperliquid-btc",
    )
    assert got == expected


# --- closed forms and invariants -----------------------------------------------------------------


@given(
    side=st.sampled_from(["long", "short"]),
    entry=st.integers(100, 10**6),
    leverage=st.integers(2, 125),
    rate_ppm=st.integers(1, 20_000),
)
def test_flat_isolated_reduces_to_closed_form(side: str, entry: int, leverage: int, rate_ppm: int) -> None:
    """Textbook isolated LP with wallet = notional/leverage: long E(1 − 1/L)/(1 − r), short E(1 + 1/L)/(1 + r)."""
    r = Fraction(rate_ppm, 10**6)
    got = liquidation_price_fraction(
        side=side, qty=1, entry_price=entry, wallet_balance=Fraction(entry, leverage),
        tiers=MarginTiers.flat(Decimal(rate_ppm) / 10**6),
    )
    if side == "long":
        assert got == entry * (1 - Fraction(1, leverage)) / (1 - r)
    else:
        assert got == entry * (1 + Fraction(1, leverage)) / (1 + r)


def test_binance_coinm_formula_closed_form() -> None:
    """Binance COIN-M FAQ (binance.com/en/support/faq/ceccfcfb4e3a45e3b48b0b1bb1a8ae46):
    LP = (Q·MMR + Side·Q) / (WB + cum + Side·Q/EP) with Q in USD contract value, WB in coin."""
    for side, sign in (("long", 1), ("short", -1)):
        q, ep, wb, mmr = Fraction(10_000), Fraction(40_000), Fraction(1, 10), Fraction(5, 1000)
        got = liquidation_price_fraction(
            side=side, qty=q, entry_price=ep, wallet_balance=wb, tiers=MarginTiers.flat("0.005"),
            contract="inverse",
        )
        assert got == (q * mmr + sign * q) / (wb + sign * q / ep)


def _equity(side: str, q: Fraction, entry: Fraction, wallet: Fraction, price: Fraction, contract: str) -> Fraction:
    s = 1 if side == "long" else -1
    pnl = s * q * (price - entry) if contract == "linear" else s * q * (1 / entry - 1 / price)
    return wallet + pnl


positions = st.fixed_dictionaries(
    {
        "side": st.sampled_from(["long", "short"]),
        "contract": st.sampled_from(["linear", "inverse"]),
        "table": st.sampled_from(["binance-btcusdt", "binance-ethusdt", "bybit-btcusdt", "hyperliquid-btc"]),
        "entry": st.integers(1_000, 120_000),
        "qty_milli": st.integers(1, 5_000_000),
        "wallet_ratio_ppm": st.integers(0, 1_500_000),
    }
)


def _args(p: dict[str, object]) -> dict[str, object]:
    entry = Fraction(p["entry"])  # type: ignore[arg-type]
    if p["contract"] == "linear":
        qty = Fraction(p["qty_milli"], 1000)  # type: ignore[arg-type]
        notional = qty * entry
    else:
        qty = Fraction(p["qty_milli"]) * 100  # type: ignore[arg-type]  # USD contract value
        notional = qty / entry
    wallet = notional * Fraction(p["wallet_ratio_ppm"], 10**6)  # type: ignore[arg-type]
    return {"side": p["side"], "qty": qty, "entry_price": entry, "wallet_balance": wallet,
            "tiers": p["table"], "contract": p["contract"]}


@given(positions)
def test_equity_equals_maintenance_at_liquidation_price(p: dict[str, object]) -> None:
    args = _args(p)
    lp = liquidation_price_fraction(**args)  # type: ignore[arg-type]
    if isinstance(lp, Decimal):  # 0 or Infinity: no positive finite root; check the claim
        return
    tiers = MarginTiers.load(str(args["table"] if "table" in args else args["tiers"]))
    q, entry, wallet = args["qty"], args["entry_price"], args["wallet_balance"]
    notional = q * lp if args["contract"] == "linear" else q / lp  # type: ignore[operator]
    equity = _equity(str(args["side"]), q, entry, wallet, lp, str(args["contract"]))  # type: ignore[arg-type]
    assert equity == tiers.maintenance_margin_exact(notional)
    # the Decimal version agrees to far below a tick
    rounded = liquidation_price(**args)  # type: ignore[arg-type]
    assert abs(Fraction(rounded) - lp) < Fraction(1, 10**30) * max(1, lp)


@given(positions)
def test_tiered_solution_is_the_unique_in_bracket_candidate(p: dict[str, object]) -> None:
    """Brute force: each bracket's own candidate; exactly one lies in its bracket, and it is the answer."""
    args = _args(p)
    lp = liquidation_price_fraction(**args)  # type: ignore[arg-type]
    assume(not isinstance(lp, Decimal))
    tiers = MarginTiers.load(str(args["tiers"]))
    q, entry, wallet = args["qty"], args["entry_price"], args["wallet_balance"]
    s = 1 if args["side"] == "long" else -1
    hits = []
    floors = [Fraction(b.floor) for b in tiers.brackets] + [None]
    for i, b in enumerate(tiers.brackets):
        r, c = Fraction(b.rate), Fraction(b.cum)
        if args["contract"] == "linear":
            cand = (wallet + c - s * q * entry) / (q * (r - s))  # type: ignore[operator]
            notional = q * cand if cand > 0 else None  # type: ignore[operator]
        else:
            x = (wallet + c + s * q / entry) / (q * (r + s))  # type: ignore[operator]
            cand = 1 / x if x > 0 else Fraction(-1)
            notional = q * x if x > 0 else None  # type: ignore[operator]
        upper = floors[i + 1]
        if notional is not None and floors[i] <= notional and (upper is None or notional < upper):
            hits.append(cand)
    assert hits == [lp]


@given(positions)
def test_bankruptcy_is_beyond_liquidation(p: dict[str, object]) -> None:
    args = _args(p)
    lp = liquidation_price(**args)  # type: ignore[arg-type]
    bp = bankruptcy_price(
        side=str(args["side"]), qty=args["qty"], entry_price=args["entry_price"],  # type: ignore[arg-type]
        wallet_balance=args["wallet_balance"], contract=str(args["contract"]),  # type: ignore[arg-type]
    )
    if args["side"] == "long":
        assert bp <= lp
    else:
        assert bp >= lp


@given(positions, st.integers(-50, 50))
def test_margin_ratio_crosses_one_at_the_liquidation_price(p: dict[str, object], bump_bp: int) -> None:
    """Margin ratio ≥ 1 exactly when the mark is on the liquidating side of LP."""
    args = _args(p)
    lp = liquidation_price_fraction(**args)  # type: ignore[arg-type]
    assume(not isinstance(lp, Decimal))
    mark = lp * (1 + Fraction(bump_bp, 10_000))
    ratio = margin_ratio(mark_price=mark, **args)  # type: ignore[arg-type]
    triggered = liquidation_triggered(side=str(args["side"]), mark_price=mark, liquidation_price=lp)
    if bump_bp == 0:
        assert ratio == 1 and triggered
    else:
        assert (ratio >= 1) == triggered


def test_no_liquidation_price_thresholds() -> None:
    """A 1× linear long is never liquidated (0); an inverse 1× short never either (Infinity);
    a short whose other positions already sink the account is liquidated at every price (0)."""
    never_long = liquidation_price(side="long", qty=1, entry_price=100, wallet_balance=100, tiers=MarginTiers.flat("0.01"))
    assert never_long == 0
    assert not liquidation_triggered(side="long", mark_price="0.0001", liquidation_price=never_long)
    never_short = liquidation_price(
        side="short", qty=100, entry_price=100, wallet_balance=2, tiers=MarginTiers.flat("0.01"), contract="inverse",
    )
    assert never_short == Decimal("Infinity")
    assert not liquidation_triggered(side="short", mark_price=10**9, liquidation_price=never_short)
    always_short = liquidation_price(
        side="short", qty=1, entry_price=100, wallet_balance=10, tiers=MarginTiers.flat("0.01"),
        other_unrealized_pnl=-200,
    )
    assert always_short == 0
    assert liquidation_triggered(side="short", mark_price=1, liquidation_price=always_short)
    assert bankruptcy_price(side="short", qty=100, entry_price=100, wallet_balance=2, contract="inverse") == Decimal("Infinity")
    assert bankruptcy_price(side="long", qty=1, entry_price=100, wallet_balance=150) == 0


def test_human_unit_helpers() -> None:
    assert position_notional(qty="0.02", price=50_000) == Decimal(1000)
    assert position_notional(qty=100, price=50_000, contract="inverse") == Decimal("0.002")
    assert unrealized_pnl(side="short", qty="0.02", entry_price=50_000, mark_price=49_000) == Decimal(20)
    assert unrealized_pnl(side="long", qty=100, entry_price=50_000, mark_price=40_000, contract="inverse") == Decimal("-0.0005")
    assert maintenance_margin(qty=10, price=50_000, tiers="binance-btcusdt") == Decimal(3700)
    assert initial_margin(qty="0.02", price=50_000, leverage=20) == Decimal(50)
    with pytest.raises(InvalidInput):
        initial_margin(qty=10, price=50_000, leverage=75, tiers="binance-btcusdt")  # 500k bracket: 50×
    assert margin_ratio(
        side="long", qty="0.02", entry_price=50_000, mark_price=50_000, wallet_balance=500, tiers=MarginTiers.flat("0.004"),
    ) == Decimal("0.008")


# --- minor units ---------------------------------------------------------------------------------


def test_maintenance_margin_minor_examples() -> None:
    # 0.02 BTC at 50,000.0: notional 1,000 USDT, 0.4 % → 4 USDT
    assert maintenance_margin_minor(BTCUSDT, "binance-btcusdt", 20, 500_000) == 400_000_000
    # ETH 0.001 at 1,234.57 with 0.65 %: 0.008024705 USDT = 802,470.5 minor → rounds up
    assert maintenance_margin_minor(ETHUSDT, MarginTiers.flat("0.0065"), 1, 123_457) == 802_471
    # inverse: 1 contract of 100 USD at 50,000.0 = 0.002 BTC, 0.4 % → 800 sat
    assert maintenance_margin_minor(BTCUSD_PERP, MarginTiers.flat("0.004"), 1, 500_000) == 800
    # entry basis, fractional average entry tick
    assert maintenance_margin_entry_minor(BTCUSDT, MarginTiers.flat("0.004"), 20, Fraction(1_000_001, 2)) == 400_000_400


@given(st.integers(1, 10**7), st.integers(1, 10**7), st.integers(1, 499_999))
def test_maintenance_margin_minor_is_ceiling_of_exact(lots: int, ticks: int, rate_ppm: int) -> None:
    tiers = MarginTiers.flat(Decimal(rate_ppm) / 10**6)
    exact = BTCUSDT.notional(ticks, lots) * Fraction(rate_ppm, 10**6)
    got = maintenance_margin_minor(BTCUSDT, tiers, lots, ticks)
    assert got - 1 < exact <= got
    assert maintenance_margin_minor(BTCUSDT, tiers, -lots, ticks) == got  # a short's size counts


def test_initial_and_pnl_minor() -> None:
    assert initial_margin_minor(BTCUSDT, 20, 500_000, 125) == 800_000_000
    assert initial_margin_minor(BTCUSDT, 1, 1, 3) == 3334  # 0.0001 USDT = 10,000 minor; /3 = 3,333.3 → up
    assert unrealized_pnl_minor(BTCUSDT, "long", 20, 500_000, 490_000) == -2_000_000_000
    assert unrealized_pnl_minor(BTCUSD_PERP, "long", 1, 500_000, 400_000) == -50_000
    assert unrealized_pnl_minor(BTCUSD_PERP, "short", 1, 500_000, 400_000) == 50_000
    # inverse: 100 USD from 30,000.0 to 30,000.1: 100·(1/30000 − 1/30000.1) BTC = 1.11 sat;
    # the long is credited 1 (down), the short owes 2 (down = toward −∞)
    assert unrealized_pnl_minor(BTCUSD_PERP, "long", 1, 300_000, 300_001) == 1
    assert unrealized_pnl_minor(BTCUSD_PERP, "short", 1, 300_000, 300_001) == -2


# --- bad input -----------------------------------------------------------------------------------


BASE = {"side": "long", "qty": 1, "entry_price": 100, "wallet_balance": 10, "tiers": "binance-btcusdt"}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"entry_price": float("nan")}, "entry_price"),
        ({"entry_price": float("inf")}, "entry_price"),
        ({"entry_price": 0}, "entry_price"),
        ({"qty": 0}, "qty"),
        ({"qty": "-1"}, "qty"),
        ({"wallet_balance": -1}, "wallet_balance"),
        ({"other_maintenance": -1}, "other_maintenance"),
        ({"tiers": "nope"}, "tiers"),
        ({"side": "buy"}, "side"),
        ({"contract": "quanto"}, "contract"),
        ({"maintenance_basis": "index"}, "maintenance_basis"),
        ({"other_unrealized_pnl": float("nan")}, "other_unrealized_pnl"),
    ],
)
def test_bad_input_names_the_field(override: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        liquidation_price(**{**BASE, **override})  # type: ignore[arg-type]
    assert info.value.field == field


def test_bad_minor_input() -> None:
    with pytest.raises(InvalidInput):
        maintenance_margin_minor(BTCUSDT, "binance-btcusdt", 1.5, 100)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        maintenance_margin_minor(BTCUSDT, "binance-btcusdt", 1, 0)
    with pytest.raises(InvalidInput):
        bankruptcy_price(side="long", qty=1, entry_price=float("nan"), wallet_balance=1)


@given(positions)
def test_entry_basis_equity_equals_constant_maintenance(p: dict[str, object]) -> None:
    """Entry basis (Bybit/BitMEX): at LP, equity equals the maintenance on the entry notional."""
    args = _args(p)
    lp = liquidation_price_fraction(maintenance_basis="entry", **args)  # type: ignore[arg-type]
    tiers = MarginTiers.load(str(args["tiers"]))
    q, entry, wallet = args["qty"], args["entry_price"], args["wallet_balance"]
    entry_notional = q * entry if args["contract"] == "linear" else q / entry  # type: ignore[operator]
    required = tiers.maintenance_margin_exact(entry_notional)
    side, contract = str(args["side"]), str(args["contract"])
    if isinstance(lp, Decimal):  # no finite root: the sign of equity − maintenance never changes
        probe = Fraction(entry) / 1000  # type: ignore[arg-type]
        gap = _equity(side, q, entry, wallet, probe, contract) - required  # type: ignore[arg-type]
        never = (lp == 0) == (side == "long")
        assert (gap > 0) == never
        return
    assert _equity(side, q, entry, wallet, lp, contract) == required  # type: ignore[arg-type]

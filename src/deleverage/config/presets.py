"""Named policy presets imitating real venues; each docstring cites the public document it follows.

Numbers a venue publishes are used as published; numbers it does not publish (its exact liquidation fee on
a given day, its insurance-fund offload algorithm) are stated as assumptions in the policy's ``notes`` so a
reader knows which parts are imitation and which are guesses.

Presets are data: each function returns the plain mapping a policy TOML file would hold (a missing field
keeps the model's default), validated into a :class:`~deleverage.config.policy.LiquidationPolicy` by
``config.policy.get_policy``. This module imports nothing of the package, so the policy model can resolve
``extends = "<preset>"`` without a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Spec = dict[str, Any]

SECOND_MS = 1_000
HOUR_MS = 3_600_000


def binance() -> Spec:
    """Binance USDⓈ-M "Liquidation Protocols" and "Insurance Fund" FAQs.

    Cancel open orders; one large IOC to bring the account back within its margin limit; if still deficient,
    the insurance fund takes the position at the bankruptcy price (remaining collateral to the fund); a
    negative balance is covered by the fund; when it cannot, counterparty liquidation (ADL) ranked by
    Binance's LeveragePnL (``max(0, UPnL)/max(1, wallet) × margin ratio``, ``engine.adl``). The fund
    accepts positions only up to its maximum position notional, by default 100 % of its size (Insurance
    Fund FAQ); beyond it, counterparty liquidation. Sources: binance.com/en/support/faq/360033525271
    (liquidation), /360033525371 (insurance fund), /360033525471 (auto-deleveraging).
    """
    return dict(
        name="binance",
        imitates="Binance USDⓈ-M futures",
        source="https://www.binance.com/en/support/faq/360033525271",
        description="IOC to restore margin, else fund takeover at bankruptcy price; ADL by leverage×PnL.",
        notes=(
            "liquidation clearance fee 0.5% of closed notional is an assumption: Binance publishes it per "
            "symbol and bracket; an older FAQ gave 0.3% for BTCUSDT and 0.5% for other perpetuals (not "
            "re-verified)",
            "restore target maintenance/equity ≤ 0.95 is an assumption (the FAQ says 'within the margin limit')",
            "the fund's maximum position = 100% of its balance in notional (Insurance Fund FAQ default); "
            "the fund's offload 'preset algorithm' is modelled as an immediate market sale",
        ),
        trigger=dict(price_source="mark"),
        partial=dict(mode="restore", target_ratio=0.95),
        execution=dict(venue="book", order="ioc_bankruptcy"),
        takeover=dict(by="insurance_fund", price="bankruptcy", when="unfilled",
                                fund_max_position_fraction=1.0),
        fees=dict(liquidation_fee_rate=0.005, fee_to="insurance_fund"),
        adl=dict(ranking="leverage_pnl", trigger="fund_exhausted"),
    )


def bybit() -> Spec:
    """Bybit "Liquidation Process (USDT Perpetual)" help-centre article.

    A position above the lowest risk limit is stepped down one risk tier at a time (an FOK for the
    difference at the bankruptcy price) until the maintenance requirement of the new tier is met; at the
    lowest tier the liquidation engine takes the position over at the bankruptcy price; losses beyond the
    fund are deleveraged (ranking = PnL% × leverage, as BitMEX). Maintenance is on entry value (see
    ``maintenance_basis="entry"`` in core.margin). Source: bybit.com/en/help-center/article/Liquidation-Process-USDT-Contract.
    """
    return dict(
        name="bybit",
        imitates="Bybit USDT perpetual",
        source="https://www.bybit.com/en/help-center/article/Liquidation-Process-USDT-Contract",
        description="Step down the risk tiers with FOK orders, then takeover at bankruptcy price.",
        notes=("takeover fee: none beyond the remaining margin (assumption)",),
        partial=dict(mode="tier_step", target_ratio=1.0),
        execution=dict(venue="book", order="fok"),
        takeover=dict(by="insurance_fund", price="bankruptcy", when="unfilled"),
        fees=dict(liquidation_fee_rate=0.0),
        adl=dict(ranking="bitmex", trigger="fund_exhausted"),
    )


def bitmex() -> Spec:
    """BitMEX "Liquidation" and "Auto-Deleveraging" guides.

    Risk-limit step-down as Bybit; takeover at the bankruptcy price; ADL ranking PnL% × effective leverage
    for profitable positions (PnL% ÷ effective leverage when in loss), effective leverage
    ``|mark value| / (mark value − bankrupt value)``; ADL only when the contract's insurance fund is
    depleted, at the bankruptcy price. Source: https://www.bitmex.com/app/autoDeleveraging (ranking and
    the worked queue example at /app/autoDeleveragingExamples).
    """
    return bybit() | {
            "name": "bitmex",
            "imitates": "BitMEX perpetual swaps",
            "source": "https://www.bitmex.com/app/autoDeleveraging",
            "notes": ("risk-limit step-down and FOK at the bankruptcy price copied from the bybit preset "
                      "(not re-checked against BitMEX's liquidation guide)",
                      "no takeover fee beyond the remaining margin (assumption)"),
            "description": "Risk-limit step-down, takeover at bankruptcy, ADL by PnL% × effective leverage.",
    }


def okx() -> Spec:
    """OKX "Forced liquidation" and ADL rules.

    Forced partial liquidation down the tiers; in cross margin an account's long/short pairs (hedge mode)
    are closed against each other first; ADL triggers when the insurance fund falls 30% from its peak within
    8 hours; ADL closes at the mark price (OKX uses the bankruptcy price only when the fund is nearly
    depleted — not modelled, see notes). Source: okx.com/help/iii-forced-liquidation; ADL trigger per
    OKX's 2023 ADL announcement.
    """
    return dict(
        name="okx",
        imitates="OKX perpetual swaps",
        source="https://www.okx.com/help/iii-forced-liquidation",
        description="Partial liquidation down the tiers; ADL on a 30% fund drawdown in 8 h.",
        notes=(
            "liquidation fee 0.5% is an assumption",
            "ADL at the mark price; OKX switches to the bankruptcy price when the fund is nearly depleted, "
            "which is not modelled (no published threshold)",
            "ADL ranking: OKX publishes 'leverage PnL% = position's PnL% × effective leverage', the BitMEX "
            "shape, so ranking = 'bitmex' (its treatment of losing positions not checked)",
        ),
        partial=dict(mode="tier_step", target_ratio=1.0),
        execution=dict(venue="book", order="ioc_bankruptcy", net_cross_pairs_first=True),
        takeover=dict(by="insurance_fund", price="bankruptcy", when="unfilled"),
        fees=dict(liquidation_fee_rate=0.005),
        adl=dict(
            ranking="bitmex", trigger="fund_drawdown", drawdown_fraction=0.3,
            drawdown_window_ms=8 * HOUR_MS, price="mark",
        ),
    )


def deribit() -> Spec:
    """Deribit knowledge base "Liquidations": incremental liquidation.

    While maintenance margin exceeds equity, the position is reduced in small steps at market until
    maintenance is restored, then liquidation stops. Source: deribit.com/kb/deribit-liquidations.
    """
    return dict(
        name="deribit",
        imitates="Deribit perpetual",
        source="https://www.deribit.com/kb/deribit-liquidations",
        description="Incremental: small steps until maintenance is restored, then stop.",
        notes=(
            "step size 10% of the position per mark tick is an assumption",
            "liquidation fee 0.75% of closed notional is an assumption (Deribit publishes per-instrument "
            "fees; not re-checked)",
            "takeover by the fund only once the account is bankrupt, ADL ranked by PnL: assumptions",
        ),
        partial=dict(mode="incremental", step_fraction=0.1, target_ratio=1.0),
        execution=dict(venue="book", order="market"),
        takeover=dict(by="insurance_fund", price="bankruptcy", when="bankrupt"),
        fees=dict(liquidation_fee_rate=0.0075),
        adl=dict(ranking="pnl", trigger="fund_exhausted"),
    )


def hyperliquid() -> Spec:
    """Hyperliquid docs, "Trading → Liquidations".

    Market orders to the book, no clearance fee. For liquidatable positions larger than 100k USDC only
    20% is sent; "after a block where any position of a user is partially liquidated, there is a
    cooldown period of 30 seconds. During this cooldown period, all market liquidation orders for that
    user will be for the entire position" (Hyperliquid announcement, inherited verbatim by HIP-3 docs,
    e.g. docs.tings.xyz/core-mechanics/liquidations) — so ``during_cooldown = "full"``; after the
    cooldown a still-liquidatable large position gets 20% again. When equity falls below 2/3 of
    maintenance without a successful book liquidation, the liquidator vault (backstop) takes the
    position. ADL: opposite users ranked by ``(mark/entry) × notional/account value`` and closed at the
    previous mark price (hyperliquid.gitbook.io/hyperliquid-docs/trading/auto-deleveraging; older
    versions of that page said "previous oracle price"). Source:
    hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations.
    """
    return dict(
        name="hyperliquid",
        imitates="Hyperliquid perps",
        source="https://hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations",
        description="20% of large positions, whole position during the 30 s cooldown; vault below 2/3 MM.",
        notes=(
            "the engine's 'previous mark' for ADL is the mark of the previous tick",
            "ADL follows a negative account after the vault; the engine's waterfall also lets the insurance "
            "fund take over first when the vault declines (Hyperliquid has no separate fund in that path)",
            "short ADL score mirrors the published long formula (entry/mark instead of mark/entry)",
            "the vault takes over at the bankruptcy price whatever its own quote (it is the protocol's "
            "backstop), within its capacity and position limit, and works the inventory back into the book",
        ),
        partial=dict(
            mode="chunk", chunk_fraction=0.2, chunk_min_notional=100_000.0, cooldown_ms=30 * SECOND_MS,
            during_cooldown="full", full_below_equity_ratio=2 / 3,
        ),
        execution=dict(venue="book", order="market"),
        takeover=dict(by="backstop", price="bankruptcy", when="below_equity_ratio", equity_ratio=2 / 3),
        fees=dict(liquidation_fee_rate=0.0),
        adl=dict(ranking="hyperliquid", trigger="fund_exhausted", price="previous_mark"),
    )


def dydx() -> Spec:
    """dYdX v4 docs, "Liquidations" and "Deleveraging".

    One batch per block; IOC at the fillable price (concedes more as the account nears bankruptcy); per-block
    and per-account limits; what cannot fill is deleveraged against offsetting accounts at the bankruptcy
    price; withdrawals gated while any account has negative equity. Source: docs.dydx.exchange.
    """
    return dict(
        name="dydx",
        imitates="dYdX v4",
        source="https://docs.dydx.exchange/concepts/trading/liquidations",
        description="Per-block batch of IOCs at the fillable price; deleverage offsetting accounts.",
        notes=(
            "block time 1 s; per-block cap 10M USD, per-account 1M USD are assumptions",
            "liquidation fee 1.5% of closed notional to the insurance fund is an assumption (dYdX v4 caps "
            "the fee by a per-market parameter; not re-checked)",
        ),
        execution=dict(
            venue="book", order="ioc_fillable", batch_interval_ms=1_000, max_batch_notional=10_000_000.0,
            max_account_notional=1_000_000.0,
        ),
        partial=dict(mode="full"),
        takeover=dict(by="none", when="unfilled"),
        fees=dict(liquidation_fee_rate=0.015, fee_to="insurance_fund"),
        adl=dict(ranking="offsetting", trigger="fund_exhausted", gate_withdrawals_on_negative_equity=True),
    )


def drift() -> Spec:
    """Drift protocol docs, "Liquidations".

    Time-ramped partial liquidation ``pct = min(1, elapsed/duration + initial)``; liquidators take over at
    oracle ± fee; fees capped so they never cause bankruptcy; losses beyond the fund socialised.
    Source: docs.drift.trade/liquidations/liquidations.
    """
    return dict(
        name="drift",
        imitates="Drift v2",
        source="https://docs.drift.trade/liquidations/liquidations",
        description="Time-ramped partial takeover at oracle ± fee; socialised loss beyond the fund.",
        notes=("ramp 25 s from 10% and 1% liquidator fee are assumptions",),
        trigger=dict(price_source="oracle"),
        partial=dict(mode="time_ramp", ramp_duration_ms=25 * SECOND_MS, ramp_initial=0.1),
        execution=dict(venue="book", order="market"),
        takeover=dict(by="backstop", price="oracle_fee", fee_bps=100.0, when="unfilled"),
        fees=dict(liquidation_fee_rate=0.01, fee_to="liquidator", cap_by_remaining_margin=True),
        adl=dict(ranking="none", trigger="fund_exhausted", socialize_losses=True),
    )


def maker() -> Spec:
    """MakerDAO Liquidations 2.0 (MIP45; ``clip.sol``/``abaci.sol``/``dog.sol``): Dutch auctions with caps.

    One auction per position through ``venues.dutch.DutchAuctionHouse`` (engine/dutch_exec.py): price
    from ``mark × buf`` down a stair-step curve, reset after ``tail`` or below ``cusp``; keepers paid
    ``tip + chip × tab`` by the fund (Maker's vow) on kick and redo; ``chop`` = 1.13, the ETH-A
    liquidation penalty (13 %). Source: github.com/makerdao/dss src/clip.sol.
    """
    return dict(
        name="maker",
        imitates="MakerDAO Liquidations 2.0",
        source="https://github.com/makerdao/dss/blob/master/src/clip.sol",
        description="Dutch auction per position (stair-step exponential), Hole/hole caps, keeper tip+chip.",
        notes=(
            "buf 1.2, 90 s steps of 0.99, tail 8400 s, cusp 0.4, chip 0.1%, tip 0: values used by ETH-A "
            "around 2021 (not re-checked per date)",
            "chop 1.13 is ETH-A's 13% liquidation penalty, charged pro rata to lots sold, capped by equity",
            "no hole / Hole caps (ETH-A had finite ones; set execution.dutch.hole / global_hole to use them)",
            "a perp position maps to a vault: collateral = its lots, debt = its value at the kick mark; "
            "shorts are bought back on the mirrored (rising) curve",
            "keeper = the first backstop provider if any, else the market account; takes when the book's "
            "best price or a backstop quote is at or better than the sale price",
            "bad debt beyond the fund is socialised (Maker: surplus buffer, then MKR issuance)",
        ),
        partial=dict(mode="full"),
        execution=dict(
            venue="dutch", order="market",
            dutch=dict(buf=1.2, curve="stairstep", step_s=90.0, cut=0.99, tail_s=8400.0, cusp=0.4,
                              tip=0.0, chip=0.001, chop=1.13, hole=None, global_hole=None),
        ),
        takeover=dict(by="insurance_fund", price="bankruptcy", when="unfilled"),
        fees=dict(liquidation_fee_rate=0.0),
        adl=dict(ranking="none", trigger="never", socialize_losses=True),
    )


def fba() -> Spec:
    """Frequent batch auction (Budish, Cramton & Shim 2015, QJE 130(4)): the mechanism deleverage argues for.

    Every interval all liquidation flow — and the insurance fund's inventory — is collected into one
    uniform-price auction: opposite liquidations cross each other at the clearing price, the residual
    meets the book's whole depth within the price band and the standing bids of registered backstop
    liquidity providers (quoting inside the maintenance rate). Orders are market orders limited by the
    band; what an account cannot pay at the clearing price goes down the waterfall. Uniform pricing
    removes the front-runner's edge inside the interval; what does not clear is taken over by the
    backstops at their quotes (the fund when they decline), or waits for the next batch.
    """
    return dict(
        name="fba",
        imitates="frequent batch auction (proposal)",
        source="https://doi.org/10.1093/qje/qjv027",
        description="Per-interval batch: net internally, residual + backstop bids into a uniform-price auction.",
        notes=(
            "design choices, not calibrated: 1 s interval, band ±200 bps around the close mark, restore target "
            "0.95, fee 0.5%, backstops quote 25 bps off the mark (inside BTCUSDT's 0.4% first-tier "
            "maintenance rate) in the auction and in takeovers, ADL by Binance's LeveragePnL",
        ),
        partial=dict(mode="restore", target_ratio=0.95),
        execution=dict(
            venue="auction", order="market", batch_interval_ms=1_000, net_opposite=True,
            include_backstop_bids=True, carry_over=True, band_bps=200.0,
        ),
        takeover=dict(by="backstop", price="backstop_quote", backstop_discount_bps=25.0, when="unfilled"),
        fees=dict(liquidation_fee_rate=0.005),
        adl=dict(ranking="leverage_pnl", trigger="fund_exhausted"),
    )


def hybrid() -> Spec:
    """Fast trigger, slow confirmation, slope not cliff (this project's proposal).

    The exchange mark flags candidates; execution waits until the slower oracle confirms (or a bounded wait
    expires); the amount closed is proportional to how far the account is below maintenance; execution
    goes through the batch auction with netting.
    """
    return dict(
        name="hybrid",
        imitates="hybrid trigger + slope (proposal)",
        source="deleverage design notes (docs/policies.md)",
        description="Mark trigger confirmed by oracle; close ∝ shortfall; batched with netting.",
        notes=(
            "design choices, not calibrated: 3 s confirmation timeout, slope gain 2 with 5% floor, full "
            "below equity/MM 0.5, 1 s batches with a ±200 bps band, fee 0.5%, backstops quote 25 bps off the "
            "mark, oracle max age 10 s and divergence 5%",
        ),
        trigger=dict(price_source="mark_confirmed_by_oracle", confirm_timeout_ms=3 * SECOND_MS),
        partial=dict(mode="slope", slope_gain=2.0, slope_min_fraction=0.05, full_below_equity_ratio=0.5),
        execution=dict(
            venue="auction", order="market", batch_interval_ms=1_000, net_opposite=True,
            include_backstop_bids=True, carry_over=True, band_bps=200.0,
        ),
        takeover=dict(by="backstop", price="backstop_quote", backstop_discount_bps=25.0, when="unfilled"),
        fees=dict(liquidation_fee_rate=0.005),
        adl=dict(ranking="leverage_pnl", trigger="fund_exhausted"),
        safeguards=dict(oracle_max_age_ms=10 * SECOND_MS, oracle_max_divergence_bps=500.0),
    )


PRESET_SPECS: dict[str, Callable[[], Spec]] = {
    "binance": binance,
    "bitmex": bitmex,
    "bybit": bybit,
    "deribit": deribit,
    "drift": drift,
    "dydx": dydx,
    "fba": fba,
    "hybrid": hybrid,
    "hyperliquid": hyperliquid,
    "maker": maker,
    "okx": okx,
}

__all__ = ["HOUR_MS", "PRESET_SPECS", "SECOND_MS", "Spec"] + sorted(PRESET_SPECS)

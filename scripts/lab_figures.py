"""Print the tables docs/lab.md quotes from a `deleverage replay --seeds K` output directory.

Usage: ``python scripts/lab_figures.py OUT_DIR [OUT_DIR ...]`` — for each directory: the yardstick with
95 % intervals and the paired difference to the baseline, the mean decomposition, and the realism figures
over every seed (long share and liquidated share of OI: mean and the seeds' range; the peak liquidation
minute of each seed; the insurance fund's direction and the pass marks of the first seed, as the
report's panel shows them). Only reads what the run wrote; prints fixed-width text for a code block.
``--save FILE OUT_DIR`` writes the small extract the tables are made from (shipped in docs/figures/);
``--from FILE [FILE ...]`` renders saved extracts (what tests/lab/test_verdict_doc.py checks docs/verdict.md
against).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl

NS_PER_MINUTE = 60_000_000_000


def _ci(row: dict, metric: str, scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    mean = fmt.format(row[metric] / scale)
    if metric + "_ci" not in row:
        return mean
    low, high = (fmt.format(v / scale) for v in row[metric + "_ci"])
    return f"{mean} [{low}, {high}]"


def _width(component: str) -> int:
    """Column width of a decomposition component: its name and two spaces, at least 8."""
    return max(8, len(component) + 2)


def _peak_minutes(out: Path, policy: str) -> list[str]:
    liq = pl.read_parquet(out / "liquidations.parquet").filter(pl.col("policy") == policy)
    if "seed" not in liq.columns:
        liq = liq.with_columns(pl.lit(0).alias("seed"))
    liq = liq.filter(pl.col("action") != "offload") if "action" in liq.columns else liq
    peaks = []
    for seed in sorted(liq["seed"].unique().to_list()):
        by_minute = (liq.filter(pl.col("seed") == seed).with_columns((pl.col("ts_ns") // NS_PER_MINUTE).alias("m"))
                     .group_by("m").agg(pl.col("notional").sum()).sort(["notional", "m"], descending=[True, False]))
        minute = int(by_minute["m"][0]) % (24 * 60)
        peaks.append(f"{minute // 60:02d}:{minute % 60:02d}")
    return peaks


def extract(out: Path) -> dict:
    """What the tables need from a run directory: the summary's figures and each seed's peak minute.

    Small enough to ship beside the docs (docs/figures/), so a test re-renders the quoted tables from it.
    """
    summary = json.loads((out / "summary.json").read_text())
    keep = ("scenario", "seeds", "seed", "accounts", "open_interest", "baseline", "policies", "vs_baseline",
            "per_seed", "realism")
    figures = {k: summary[k] for k in keep if k in summary}
    figures["peak_minutes"] = {name: _peak_minutes(out, name) for name in summary["policies"]}
    return figures


def tables(out: Path) -> str:
    return render(extract(out))


def render(summary: dict) -> str:
    """The fixed-width tables docs/verdict.md quotes."""
    policies = summary["policies"]
    order = sorted(policies, key=lambda n: policies[n]["shortfall_bps"])
    base = summary["baseline"]
    lines = [f"{summary['scenario']}: seeds {summary['seeds'][0]}–{summary['seeds'][-1]}, {summary['accounts']:,} "
             f"accounts open at the start, open interest {summary['open_interest'] / 1e9:.2f} B (first seed); means [95 % t interval]; "
             f"quote amounts in M USDT",
             f" {'policy':<12} {'shortfall_bps':<24} {'system_loss':<24} {'cascade_notional':<24} "
             f"{'netted':>6} {'fund drawdown':<20} {'ADL':>6} {'liquidated':>10}  shortfall_bps vs {base}"]
    for name in order:
        row, diff = policies[name], summary["vs_baseline"][name]
        versus = "—" if name == base else _ci(diff, "shortfall_bps", fmt="{:+.1f}")
        lines.append(f" {name:<12} {_ci(row, 'shortfall_bps'):<24} {_ci(row, 'system_loss', 1e6):<24} "
                     f"{_ci(row, 'cascade_notional', 1e6):<24} {row['netted_notional'] / 1e6:>6.1f} "
                     f"{_ci(row, 'insurance_fund_drawdown', 1e6):<20} {row['adl_count']:>6.0f} "
                     f"{row['liquidated_notional'] / 1e9:>8.2f} B  {versus}")
    lines += ["", f"paired difference to {base}, same seeds (mean [95 % t interval]; M USDT)",
              f" {'policy':<12} {'system_loss':<28} {'cascade_notional':<28} {'fund drawdown':<24}"]
    for name in order:
        if name == base:
            continue
        diff = summary["vs_baseline"][name]
        lines.append(f" {name:<12} {_ci(diff, 'system_loss', 1e6, '{:+.1f}'):<28} "
                     f"{_ci(diff, 'cascade_notional', 1e6, '{:+.1f}'):<28} "
                     f"{_ci(diff, 'insurance_fund_drawdown', 1e6, '{:+.1f}'):<24}")
    components = [c for c in next(iter(policies.values()))["decomposition"]
                  if any(abs(policies[n]["decomposition"][c]) >= 5e4 for n in order)]
    lines += ["", "mean decomposition of shortfall_quote (M USDT; components under 0.05 M everywhere left out)",
              " " + f"{'policy':<12}" + "".join(f"{c:>{_width(c)}}" for c in components) + f"{'shortfall_quote':>17}"]
    for name in order:
        parts = policies[name]["decomposition"]
        lines.append(" " + f"{name:<12}" + "".join(f"{parts[c] / 1e6:>{_width(c)}.1f}" for c in components)
                     + f"{policies[name]['shortfall_quote'] / 1e6:>17.1f}")
    per_seed = summary.get("per_seed") or {str(summary["seed"]): {n: policies[n] for n in policies}}
    checks = summary["realism"]["checks"]
    lines += ["", "realism over the seeds (published: " + ", ".join(
        f"{k} {checks[k]['published'] if not isinstance(checks[k]['published'], float) else round(checks[k]['published'], 3)}"
        f" {checks[k]['tolerance']}" for k in ("long_share", "liquidated_oi_share", "peak_minute", "fund_direction")
        if k in checks) + ")",
        f" {'policy':<12} {'long_share mean [range]':<26} {'liq. OI share [range]':<26} {'peak minute by seed':<36} "
        f"fund (seed 1)  passes (seed 1)"]
    for name in order:
        longs = [per_seed[s][name]["long_share"] for s in per_seed]
        shares = [per_seed[s][name]["liquidated_oi_share"] for s in per_seed]
        marks = " ".join(f"{k.split('_')[0]}:{'pass' if checks[k]['pass'].get(name) else 'miss'}"
                         for k in ("long_share", "liquidated_oi_share", "peak_minute", "fund_direction") if k in checks)
        lines.append(f" {name:<12} {sum(longs) / len(longs):.3f} [{min(longs):.3f}–{max(longs):.3f}]{'':<9} "
                     f"{sum(shares) / len(shares):.3f} [{min(shares):.3f}–{max(shares):.3f}]{'':<9} "
                     f"{' '.join(summary['peak_minutes'][name]):<36} {checks['fund_direction']['model'][name]:<14} {marks}")
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    if argv[0] == "--save":  # --save FILE OUT_DIR: write the extract the docs test renders
        target, out = Path(argv[1]), Path(argv[2])
        target.write_text(json.dumps(extract(out), indent=1, sort_keys=True) + "\n")
        print(f"wrote {target}")
        return 0
    if argv[0] == "--from":  # --from FILE [FILE ...]: render saved extracts
        print("\n\n".join(render(json.loads(Path(a).read_text())) for a in argv[1:]))
        return 0
    print("\n\n".join(tables(Path(a)) for a in argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Intervals over seeds: each metric's mean with a 95 % Student-t interval, and paired differences.

Why Student-t and not a bootstrap: a run is a few seeds (``--seeds K``, typically 3–10). A percentile
bootstrap of K values has at most C(2K−1, K) distinct resamples (10 for K = 3, 126 for K = 5), its
interval never reaches beyond the observed extremes and undercovers badly at such K; the t interval
``mean ± t_{0.975, K−1} · s / √K`` has exact coverage when the per-seed values are normal and is the
textbook choice at small K (it is wide at K = 3 — t_{0.975, 2} = 4.30 — which is the honest answer).

Paired differences: every policy of a seed runs on the same population and the same market path, so
the difference of a metric between a policy and the baseline is computed seed by seed and the t
interval is taken over those K differences (a paired t interval), which removes the variance the
policies share.

The t quantile is computed here (no SciPy dependency): the Student-t CDF through the regularised
incomplete beta function (continued fraction, Numerical Recipes §6.4), inverted by bisection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from deleverage.errors import InvalidInput

LEVEL = 0.95
METHOD = "student_t"


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function."""
    if not 0.0 <= x <= 1.0:
        raise InvalidInput("x", x, "must be in [0, 1]")
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: int) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom."""
    x = df / (df + t * t)
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, x)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t (bisection on :func:`t_cdf`, to 1e-12)."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise InvalidInput("df", df, "must be an int >= 1")
    if not 0.0 < p < 1.0:
        raise InvalidInput("p", p, "must be in (0, 1)")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of the mean; a single value gives a zero-width interval."""
    n = len(values)
    if n == 0:
        raise InvalidInput("values", [], "need at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, mean, mean
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile(0.5 + level / 2.0, n - 1) * math.sqrt(variance / n)
    return mean, mean - half, mean + half


def paired_difference(values: Sequence[float], baseline: Sequence[float],
                      level: float = LEVEL) -> tuple[float, float, float]:
    """(mean difference, low, high) of ``values − baseline`` seed by seed (a paired t interval)."""
    if len(values) != len(baseline):
        raise InvalidInput("baseline", len(baseline), f"needs one value per seed ({len(values)})")
    return mean_interval([v - b for v, b in zip(values, baseline, strict=True)], level)


__all__ = ["LEVEL", "METHOD", "mean_interval", "paired_difference", "regularized_beta", "t_cdf", "t_quantile"]

"""deleverage.execution — how a parent order is worked: impact models, closed forms, algorithms.

``almgren_chriss(*, shares, horizon, periods, sigma, eta, gamma, epsilon, risk_aversion)`` is the
Almgren–Chriss (2000) discrete optimum; the impact models live in :mod:`.impact`, the policies in
:mod:`.algos`, the policy runner in :mod:`.runner` and the comparison job in :mod:`.compare`.
"""

from deleverage.execution.algos import (
    AdaptiveLimitMarket,
    ChildOrder,
    ExecutionState,
    FillablePriceIOC,
    MarketSweep,
    PercentOfVolume,
    Policy,
    ScheduleFollower,
    almgren_chriss_policy,
    obizhaeva_wang_policy,
    twap,
)
from deleverage.execution.almgren_chriss import (
    AlmgrenChrissSolution,
    ObizhaevaWangSchedule,
    almgren_chriss,
    efficient_frontier,
    obizhaeva_wang_optimum,
    schedule_cost,
)
from deleverage.execution.book import ResilientBook, Walk
from deleverage.execution.impact import (
    FitResult,
    LinearImpact,
    ObizhaevaWangImpact,
    PropagatorImpact,
    ScheduleImpact,
    SquareRootImpact,
)
from deleverage.execution.runner import ExecutionReport, Fill, MarketTick, run_policy

__all__ = [
    "AdaptiveLimitMarket",
    "AlmgrenChrissSolution",
    "ChildOrder",
    "ExecutionReport",
    "ExecutionState",
    "Fill",
    "FillablePriceIOC",
    "FitResult",
    "LinearImpact",
    "MarketSweep",
    "MarketTick",
    "ObizhaevaWangImpact",
    "ObizhaevaWangSchedule",
    "PercentOfVolume",
    "Policy",
    "PropagatorImpact",
    "ResilientBook",
    "ScheduleFollower",
    "ScheduleImpact",
    "SquareRootImpact",
    "Walk",
    "almgren_chriss",
    "almgren_chriss_policy",
    "efficient_frontier",
    "obizhaeva_wang_optimum",
    "obizhaeva_wang_policy",
    "run_policy",
    "schedule_cost",
    "twap",
]

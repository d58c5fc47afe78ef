"""Named policy presets imitating real venues — the factories of :data:`deleverage.config.policy.PRESETS`.

Each preset's data (with the docstring citing the document it follows) is in
:mod:`deleverage.config.presets`; ``PRESETS[name]()`` validates it into a ``LiquidationPolicy``. This
module keeps ``deleverage.engine.presets`` (``PRESETS``, ``binance()``, ...) working for existing callers.
"""

from deleverage.config.policy import HOUR_MS, PRESETS, SECOND_MS

binance = PRESETS["binance"]
bitmex = PRESETS["bitmex"]
bybit = PRESETS["bybit"]
deribit = PRESETS["deribit"]
drift = PRESETS["drift"]
dydx = PRESETS["dydx"]
fba = PRESETS["fba"]
hybrid = PRESETS["hybrid"]
hyperliquid = PRESETS["hyperliquid"]
maker = PRESETS["maker"]
okx = PRESETS["okx"]

__all__ = ["HOUR_MS", "PRESETS", "SECOND_MS", "binance", "bitmex", "bybit", "deribit", "drift", "dydx", "fba", "hybrid", "hyperliquid", "maker", "okx"]

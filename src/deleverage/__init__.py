"""deleverage: engine and stress lab for batch liquidation execution on leveraged derivatives venues."""

__version__ = "0.1.0"

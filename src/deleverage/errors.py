"""One exception tree for deleverage.

::

    DeleverageError
    ├── InvalidInput (also ValueError)   bad argument: NaN price, negative size, unknown name
    ├── DataError                        malformed or inconsistent data file (names file, line, field)
    ├── LedgerError                      a posting that would break the ledger (unbalanced, overdraft)
    ├── BookIntegrityError               order book state or update stream is inconsistent (gap, cross)
    └── SimulationError                  the lab was asked something impossible (time going backwards)

Business outcomes — no fill, insurance fund exhausted, oracle stale — are audit events, not exceptions.
Every message names the field and the offending value.
"""

from __future__ import annotations


class DeleverageError(Exception):
    """Base of every error deleverage raises on purpose."""


class InvalidInput(DeleverageError, ValueError):
    """An argument is out of its domain; the message names the field and its value."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}={value!r}: {problem}")


class DataError(DeleverageError):
    """A data file is missing, malformed or inconsistent."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            message = f"field {field!r}: {message}"
        super().__init__(where + message)


class LedgerError(DeleverageError):
    """A ledger operation was refused; the ledger is unchanged."""


class BookIntegrityError(DeleverageError):
    """An order book or its update stream is inconsistent (gap in update ids, crossed book...)."""


class SimulationError(DeleverageError):
    """The simulator was driven into an impossible state (non-monotonic clock, unknown event)."""


__all__ = [
    "BookIntegrityError",
    "DataError",
    "DeleverageError",
    "InvalidInput",
    "LedgerError",
    "SimulationError",
]

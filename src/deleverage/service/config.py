"""Service configuration: where events are stored, which policy runs, on which instruments, who may call.

A config is a pydantic model, loaded from a TOML file (:meth:`ServiceConfig.load`) with environment
overrides (``DELEVERAGE_DATABASE_URL``, ``DELEVERAGE_POLICY``, ``DELEVERAGE_API_KEYS``). API keys are
never stored in clear: the config holds their SHA-256 hex digests (``deleverage.service.auth.hash_key``
computes one). ``DELEVERAGE_API_KEYS`` is a comma-separated list of ``name:role:sha256hex``.

The *genesis* (policy, instruments, margin tiers, seeded insurance fund) decides what every replayed
input produces, so the store records it and refuses to start under a different one
(:meth:`ServiceConfig.genesis`).

Example ``service.toml``::

    database_url = "sqlite:///var/lib/deleverage/events.db"
    policy = "binance"                      # a preset name or a path to a policy TOML
    instruments = ["BTCUSDT"]
    insurance_fund = { USDT = "100000" }    # seeded at genesis, human units
    maintenance_tiers = { BTCUSDT = "flat:0.004" }   # optional: bundled table name or flat:<rate>
    ts_window_ahead_s = 60                  # input timestamps at most this far ahead of the server clock
    ts_window_behind_s = 86400              # ... and at most this far behind it (inf: no bound)
    snapshot_every = 20000                  # inputs between snapshots (0: none)

    [[api_keys]]
    name = "feed-1"
    role = "feeder"
    sha256 = "<64 hex digits>"

    [[api_keys]]
    name = "desk-7"
    role = "reader"
    sha256 = "<64 hex digits>"
    accounts = ["alice", "bob"]             # a scoped reader sees only these accounts

Files beside a SQLite store ``events.db``: ``events.db.lock`` (the one-writer lock),
``events.db.head`` (the last committed sequence and chain digest, outside the database, so a lost
WAL or an older copy of the file is noticed) and ``events.db.snapshots/``. A PostgreSQL store keeps
its lock in the database (an advisory lock) and its head file and snapshots under ``state_dir``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deleverage.core.instruments import Instrument, get_instrument
from deleverage.core.money import to_decimal
from deleverage.core.tiers import MarginTiers
from deleverage.engine.alerts import AlertRule
from deleverage.engine.policy import LiquidationPolicy, get_policy
from deleverage.errors import InvalidInput
from deleverage.service.monitor_config import MonitorSettings, check_rules

Role = Literal["feeder", "reader"]
ENV_PREFIX = "DELEVERAGE_"


class ApiKey(BaseModel):
    """One client: a name (logged with each input it posts), its role and the SHA-256 of its key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    role: Role
    sha256: str
    accounts: tuple[str, ...] | None = None  # a reader scoped to these accounts (None: every account)

    @field_validator("accounts")
    @classmethod
    def _scope(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("a scoped key names at least one account (omit 'accounts' for all)")
        return value

    @model_validator(mode="after")
    def _readers_only(self) -> ApiKey:
        if self.accounts is not None and self.role != "reader":
            raise ValueError("only reader keys can be scoped to accounts")
        return self

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("must be the 64-hex-digit SHA-256 of the key, not the key itself")
        return value


class ServiceConfig(BaseModel):
    """Everything the service needs; see the module docstring for the TOML form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = "sqlite:///deleverage-events.db"
    policy: str = "binance"
    instruments: tuple[str, ...] = ("BTCUSDT",)
    insurance_fund: dict[str, str] = Field(default_factory=dict)
    maintenance_tiers: dict[str, str] = Field(default_factory=dict)
    api_keys: tuple[ApiKey, ...] = ()
    market_account: str = "market"
    max_page: int = Field(1000, ge=1, le=100_000)
    # --- what an input may be (checked before anything is written) ---------------------------------
    max_body_bytes: int = Field(1 << 20, ge=1024, le=64 << 20)
    max_book_levels: int = Field(1000, ge=1, le=1023)
    book_max_span_ticks: int = Field(1 << 20, ge=1024, le=1 << 25)
    ts_window_ahead_s: float = Field(60.0, ge=0)
    ts_window_behind_s: float = Field(86_400.0, ge=0)
    # --- durability and speed ---------------------------------------------------------------------
    max_batch: int = Field(512, ge=1, le=100_000)  # inputs per group commit
    # after a commit, wait up to this long for the clients it answered to send their next inputs,
    # so they share the next fsync (0: commit what is there at once; measured: 0 is faster for
    # batched feeds, where the wait keeps the disk idle while the loop parses)
    commit_delay_s: float = Field(0.0, ge=0, le=1.0)
    snapshot_every: int = Field(20_000, ge=0)  # inputs between snapshots; 0: never
    snapshots_kept: int = Field(2, ge=1, le=100)
    snapshot_fork: bool = True  # write snapshots from a forked child, so writers never wait
    state_dir: str | None = None  # head file + snapshots; default: beside a SQLite file
    head_sync_s: float = Field(0.2, ge=0, le=60)  # head file fsync at most this often (0: every commit)
    idempotency_cache: int = Field(100_000, ge=0)
    stream_queue: int = Field(10_000, ge=16)
    store_retry_s: float = Field(0.25, gt=0, le=60)
    warm_up: bool = True  # compile the engine's kernels at start, before the port opens
    # SQLite commits on the event loop (no GIL hand-over to a thread per group; reads wait out an
    # fsync); true: on a thread, so reads are served during a slow fsync. PostgreSQL: always a thread.
    commit_thread: bool = False
    # --- the risk desk's monitor (service/monitor_config.py): on when the config has a [monitor] table
    monitor: MonitorSettings | None = None
    alerts: tuple[AlertRule, ...] = ()
    dashboard_session_h: float = Field(12.0, gt=0, le=24 * 30)  # a dashboard login lasts this long

    @field_validator("ts_window_ahead_s", "ts_window_behind_s")
    @classmethod
    def _window(cls, value: float) -> float:
        if math.isnan(value):
            raise ValueError("must be a number of seconds (inf: no bound)")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or value.startswith(("postgresql://", "postgres://"))):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("instruments")
    @classmethod
    def _some_instruments(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one instrument is needed")
        if len(set(value)) != len(value):
            raise ValueError("each instrument appears once")
        return value

    @field_validator("insurance_fund")
    @classmethod
    def _decimal_amounts(cls, value: dict[str, str]) -> dict[str, str]:
        for code, amount in value.items():
            if to_decimal(amount, f"insurance_fund.{code}") < 0:
                raise ValueError(f"insurance_fund.{code} must be >= 0")
        return value

    # --- loading ------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> ServiceConfig:
        """Read ``path`` (TOML; none → defaults) and apply ``DELEVERAGE_*`` environment overrides."""
        data: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            try:
                data = tomllib.loads(p.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise InvalidInput("config", str(p), "file not found") from None
            except tomllib.TOMLDecodeError as exc:
                raise InvalidInput("config", str(p), f"not valid TOML: {exc}") from None
        overrides = _env_overrides(os.environ if env is None else env)
        hooks = overrides.pop("alert_webhooks", None)
        data.update(overrides)
        if hooks is not None:
            if not isinstance(data.get("monitor"), dict):
                raise InvalidInput(ENV_PREFIX + "ALERT_WEBHOOKS", "<redacted>", "alert webhooks need a [monitor] table")
            data["monitor"] = {**data["monitor"], "webhooks": hooks}
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceConfig:
        """Validate, turning pydantic's error into an InvalidInput naming the field."""
        try:
            config = cls.model_validate(dict(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "config"
            raise InvalidInput(where, first.get("input"), first["msg"]) from None
        check_rules(config.monitor, config.alerts)
        return config

    @property
    def monitor_on(self) -> bool:
        return self.monitor is not None and self.monitor.enabled

    # --- what the engine is built from --------------------------------------------------------------
    def load_policy(self) -> LiquidationPolicy:
        return get_policy(self.policy)

    def load_instruments(self) -> list[Instrument]:
        return [get_instrument(s) for s in self.instruments]

    def tiers_for(self, instrument: Instrument) -> MarginTiers:
        """The configured tier table of ``instrument``: ``flat:<rate>``, a bundled name, or its default."""
        spec = self.maintenance_tiers.get(instrument.symbol, instrument.tiers)
        if spec is None:
            raise InvalidInput(f"maintenance_tiers.{instrument.symbol}", None,
                               "this instrument bundles no tier table; configure 'flat:<rate>' or a table name")
        if spec.startswith("flat:"):
            return MarginTiers.flat(spec.removeprefix("flat:"))
        return MarginTiers.load(spec)

    def store_paths(self) -> tuple[Path | None, Path, Path]:
        """(lock file or None on PostgreSQL, head file, snapshot directory) of this store."""
        if self.database_url.startswith("sqlite:///"):
            db = self.database_url.removeprefix("sqlite:///")
            if db == ":memory:":
                raise InvalidInput("database_url", self.database_url, "needs a file: the store must survive")
            base = Path(self.state_dir) if self.state_dir else None
            lock = Path(db + ".lock")
            head = base / "HEAD" if base else Path(db + ".head")
            snaps = base / "snapshots" if base else Path(db + ".snapshots")
            return lock, head, snaps
        base = Path(self.state_dir or "deleverage-state")
        return None, base / "HEAD", base / "snapshots"

    def genesis(self) -> dict[str, Any]:
        """What decides every replayed output besides the inputs: stored once, compared on restart."""
        policy = self.load_policy()
        return {
            "policy": policy.model_dump(mode="json"),
            "instruments": list(self.instruments),
            "maintenance_tiers": {i.symbol: _tier_spec(self, i) for i in self.load_instruments()},
            "insurance_fund": {c: str(to_decimal(v, c)) for c, v in sorted(self.insurance_fund.items())},
            "market_account": self.market_account,
        }

    def genesis_digest(self) -> str:
        text = json.dumps(self.genesis(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _tier_spec(config: ServiceConfig, instrument: Instrument) -> str | None:
    return config.maintenance_tiers.get(instrument.symbol, instrument.tiers)


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if url := env.get(ENV_PREFIX + "DATABASE_URL"):
        out["database_url"] = url
    if policy := env.get(ENV_PREFIX + "POLICY"):
        out["policy"] = policy
    if keys := env.get(ENV_PREFIX + "API_KEYS"):
        out["api_keys"] = [_parse_env_key(item, i) for i, item in enumerate(keys.split(",")) if item.strip()]
    if hooks := env.get(ENV_PREFIX + "ALERT_WEBHOOKS"):
        out["alert_webhooks"] = [u.strip() for u in hooks.split(",") if u.strip()]
    return out


def _parse_env_key(item: str, index: int) -> dict[str, Any]:
    parts = item.strip().split(":")
    if len(parts) not in (3, 4):
        raise InvalidInput(f"{ENV_PREFIX}API_KEYS[{index}]", "<redacted>",
                           "expected name:role:sha256hex[:account|account...]")
    key: dict[str, Any] = {"name": parts[0], "role": parts[1], "sha256": parts[2]}
    if len(parts) == 4:
        key["accounts"] = [a for a in parts[3].split("|") if a]
    return key


__all__ = ["ENV_PREFIX", "ApiKey", "Role", "ServiceConfig"]

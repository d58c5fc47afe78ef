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

    [[api_keys]]
    name = "feed-1"
    role = "feeder"
    sha256 = "<64 hex digits>"
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from deleverage.core.instruments import Instrument, get_instrument
from deleverage.core.money import to_decimal
from deleverage.core.tiers import MarginTiers
from deleverage.engine.policy import LiquidationPolicy, get_policy
from deleverage.errors import InvalidInput

Role = Literal["feeder", "reader"]
ENV_PREFIX = "DELEVERAGE_"


class ApiKey(BaseModel):
    """One client: a name (logged with each input it posts), its role and the SHA-256 of its key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    role: Role
    sha256: str

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
        data.update(_env_overrides(os.environ if env is None else env))
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceConfig:
        """Validate, turning pydantic's error into an InvalidInput naming the field."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "config"
            raise InvalidInput(where, first.get("input"), first["msg"]) from None

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
    return out


def _parse_env_key(item: str, index: int) -> dict[str, str]:
    parts = item.strip().split(":")
    if len(parts) != 3:
        raise InvalidInput(f"{ENV_PREFIX}API_KEYS[{index}]", "<redacted>", "expected name:role:sha256hex")
    return {"name": parts[0], "role": parts[1], "sha256": parts[2]}


__all__ = ["ENV_PREFIX", "ApiKey", "Role", "ServiceConfig"]

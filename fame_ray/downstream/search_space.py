"""Search spaces of downstream sweeps: parsing, validation and description (pure, no Ray).

Search spaces are written on the command line (`--search lr=loguniform(1e-3,1e-1)`) or in
a YAML file (`lr: loguniform(1e-3, 1e-1)`, `dropout: [0.5, 0.7]`, `epochs: 30`), and are
parsed into a plain, YAML-safe form that the config keeps:
`{param: {"kind": grid|choice|uniform|loguniform|randint|value, "values": [...]}}`.
Only `sweep.to_tune_space` turns it into Ray Tune domains.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from fame_ray.config import load_yaml, parse_yaml
from fame_ray.errors import ConfigError, printable

SEARCHABLE = {"lr": float, "weight_decay": float, "dropout": float, "epochs": int}
KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "value")
_CALL = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$")


def _quoted(value) -> str:
    """A value the user wrote, for a one-line message: its repr, escaped and cut."""
    return printable(repr(value), 80)


def _number(key: str, raw, kind: str):
    value = raw
    if isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(
            f"search space '{key}': {_quoted(raw)} is not a number", "e.g. --search 'lr=loguniform(1e-3,1e-1)'"
        )
    if SEARCHABLE[key] is int:
        if float(value) != int(value):
            raise ConfigError(f"search space '{key}': {_quoted(raw)} is not a whole number")
        return int(value)
    return float(value)


def _check_range(key: str, kind: str, values: list) -> None:
    usage = f"{kind}(low, high) with low < high"
    if kind in ("uniform", "loguniform", "randint"):
        if len(values) != 2 or not values[0] < values[1]:
            raise ConfigError(f"search space '{key}': {kind} needs two bounds, low < high; got {values}", usage)
        if kind == "loguniform" and values[0] <= 0:
            raise ConfigError(f"search space '{key}': loguniform bounds must be positive; got {values}", usage)
    elif not values:
        raise ConfigError(f"search space '{key}': {kind} needs at least one value")
    for value in values:
        if not _value_ok(key, value):
            raise ConfigError(
                f"search space '{key}': value {value} is out of range",
                "lr and epochs > 0, weight_decay >= 0, 0 <= dropout < 1",
            )


def _value_ok(key: str, value) -> bool:
    if key == "dropout":
        return 0 <= value < 1
    if key == "weight_decay":
        return value >= 0
    return value > 0


def _check_key(key) -> str:
    key = str(key).strip()  # a YAML key may be a number
    if key not in SEARCHABLE:
        close = difflib.get_close_matches(key[:200], SEARCHABLE, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"searchable: {', '.join(SEARCHABLE)}"
        raise ConfigError(f"search space: unknown hyperparameter '{printable(key, limit=80)}'", hint)
    return key


def parse_spec(key: str, spec) -> dict:
    """One hyperparameter's spec -> {"kind", "values"}.

    Accepted: 'loguniform(a,b)', 'uniform(a,b)', 'randint(a,b)', 'choice(a,b,...)',
    '[a, b, ...]' or a list (grid search), a number (fixed value), or the parsed form.
    """
    key = _check_key(key)
    if isinstance(spec, dict):
        return _parse_mapping(key, spec)
    if isinstance(spec, (list, tuple)):
        kind, raw_values = "grid", list(spec)
    elif isinstance(spec, str) and _CALL.match(spec):
        name, inner = _CALL.match(spec).groups()
        kind, raw_values = name.lower(), [v for v in inner.split(",") if v.strip()]
        if kind not in KINDS or kind in ("grid", "value"):
            raise ConfigError(
                f"search space '{key}': unknown distribution '{name}'",
                "use grid [a,b], choice(a,b), uniform(a,b), loguniform(a,b) or randint(a,b)",
            )
    elif isinstance(spec, str) and spec.strip().startswith("["):
        try:
            raw_values = parse_yaml(spec)
        except ValueError:
            raise ConfigError(
                f"search space '{key}': cannot parse {_quoted(spec)}", "a grid is written [a, b, c]"
            ) from None
        if not isinstance(raw_values, list):
            raise ConfigError(f"search space '{key}': cannot parse {_quoted(spec)}", "a grid is written [a, b, c]")
        kind = "grid"
    else:
        kind, raw_values = "value", [spec]
    values = [_number(key, raw, kind) for raw in raw_values]
    _check_range(key, kind, values)
    return {"kind": kind, "values": values}


def _parse_mapping(key: str, spec: dict) -> dict:
    if set(spec) == {"kind", "values"}:
        kind, raw_values = spec["kind"], spec["values"]
    elif len(spec) == 1:
        kind, raw_values = next(iter(spec.items()))
    else:
        raise ConfigError(f"search space '{key}': cannot parse {_quoted(spec)}", "e.g. {loguniform: [1e-3, 1e-1]}")
    if kind not in KINDS:
        raise ConfigError(f"search space '{key}': unknown distribution '{kind}'", f"one of {', '.join(KINDS)}")
    raw_values = raw_values if isinstance(raw_values, (list, tuple)) else [raw_values]
    values = [_number(key, raw, kind) for raw in raw_values]
    _check_range(key, kind, values)
    return {"kind": kind, "values": values}


def parse_search_flags(items: list[str]) -> dict:
    """`--search key=spec` strings -> parsed space (a later flag for a key wins)."""
    space = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(
                f"search space '{item}' is not of the form key=spec", "e.g. --search 'lr=loguniform(1e-3,1e-1)'"
            )
        key, spec = item.split("=", 1)
        space[key.strip()] = parse_spec(key, spec.strip())
    return space


def load_search_file(path: str) -> dict:
    """A YAML file mapping hyperparameters to specs (optionally under `search_space:`)."""
    values = load_yaml(path)
    values = values.get("search_space", values)
    if not isinstance(values, dict):
        raise ConfigError(f"search file {path} must map hyperparameters to specs")
    return normalise_space(values)


def normalise_space(space: dict) -> dict:
    """Any accepted form (strings, lists, mappings) -> the parsed form; validates it."""
    return {_check_key(key): parse_spec(key, spec) for key, spec in (space or {}).items()}


def max_value(space: dict, key: str, default):
    """The largest value a hyperparameter can take in the space (e.g. epochs for ASHA's max_t)."""
    entry = space.get(key)
    if not entry:
        return default
    return max(entry["values"])


def grid_size(space: dict) -> int:
    """Trials one sample of the space makes (the product of the grid sizes)."""
    return math.prod(len(e["values"]) for e in space.values() if e["kind"] == "grid")


def describe_space(space: dict) -> dict:
    """Readable specs for the results table, e.g. {'lr': 'loguniform(0.001, 0.1)'}."""
    out = {}
    for key, entry in space.items():
        values = ", ".join(f"{v:g}" for v in entry["values"])
        out[key] = {"grid": f"[{values}]", "value": values}.get(entry["kind"], f"{entry['kind']}({values})")
    return out


@dataclass(frozen=True)
class Hyperparameters:
    """One trial's values of the SEARCHABLE hyperparameters."""

    lr: float
    weight_decay: float
    dropout: float
    epochs: int

    @classmethod
    def from_trial(cls, values: dict) -> Hyperparameters:
        """From a Tune trial's config (numbers of any type; epochs rounded)."""
        return cls(
            float(values["lr"]), float(values["weight_decay"]), float(values["dropout"]), int(round(values["epochs"]))
        )

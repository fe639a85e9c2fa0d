"""Config <-> plain data: dicts, YAML files and `section.key=value` overrides, and `build`, the one
path every command takes from a preset to a validated config.

    cfg = build(PretrainConfig, presets.demo_pretrain(), load_yaml("jobs/x.yaml"), flags, ["train.epochs=5"])
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from fame_ray.errors import ConfigError, printable
from fame_ray.storage import check_nesting

CONFIG_FILE_HINT = "give the path of a YAML file, e.g. jobs/pretrain-ucf101-r21d.yaml"
SHOWN_CHARACTERS = 80  # a key or value the user typed is echoed this far, escaped, then cut


def parse_yaml(text: str) -> Any:
    """yaml.safe_load that fails only with ValueError (its first line says why), whatever is
    wrong with the text: a syntax error, a tagged or implicit value its constructor refuses
    (`!!int abc`, a date such as 2001-13-45), nesting deep enough to exhaust the parser's
    recursion, or aliases that expand past any config's size."""
    try:
        value = yaml.safe_load(text)
        check_nesting(value)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as error:
        raise ValueError((str(error).splitlines() or [type(error).__name__])[0][:200]) from None
    return value


def _shown(text: Any) -> str:
    return printable(text, limit=SHOWN_CHARACTERS)


def to_dict(config: Any) -> dict:
    """A plain, YAML- and JSON-safe dict (tuples become lists)."""

    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def _nested_type(cls, name):
    hints = typing.get_type_hints(cls)
    hint = hints[name]
    return hint if dataclasses.is_dataclass(hint) else None


def from_dict(cls, values: dict | None, where: str = ""):
    """Build `cls` from a nested dict; unknown keys are an error that suggests the right one."""
    values = dict(values or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            key = str(key)  # a YAML key may be a number
            close = difflib.get_close_matches(key[:200], known, n=1)
            hint = f"; did you mean '{where}{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
            raise ConfigError(f"unknown config key '{_shown(where + key)}'{hint}")
        nested = _nested_type(cls, key)
        if nested is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{where}{key}' must be a mapping")
            kwargs[key] = from_dict(nested, value, where=f"{where}{key}.")
        else:
            kwargs[key] = _coerce(cls, key, value, where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, OverflowError) as error:  # a value __post_init__ could not take apart
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"bad config for '{where or cls.__name__}': {first}") from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        lowered = value.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ValueError(value)
        return lowered in ("true", "1", "yes", "on")
    if not isinstance(value, (bool, int)):
        raise ValueError(value)
    return bool(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)


def _to_tuple(value: Any, item: type) -> tuple:
    if isinstance(value, str):
        value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
    return tuple(item(v) for v in value)


def _to_dict(value: Any) -> dict:
    if isinstance(value, str):
        value = parse_yaml(value)
    if not isinstance(value, dict):
        raise ValueError(value)
    return value


_CONVERTERS = {bool: _to_bool, int: _to_int, float: float, str: str, dict: _to_dict}


def _coerce(cls, key: str, value: Any, where: str):
    """Check a leaf value against its annotation (bool, int, float, str, tuple, dict)."""
    hint = typing.get_type_hints(cls)[key]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        choices = [a for a in args if a is not type(None)]
        # `int | str` (e.g. train.micro_batch: a number or 'auto'): the first type that takes it.
        for choice in choices[:-1]:
            try:
                return _coerce_leaf(choice, value)
            except (TypeError, ValueError, OverflowError):
                continue
        hint = choices[-1]
    try:
        return _coerce_leaf(hint, value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(
            f"config key '{where}{key}' has a bad value {_shown(repr(value))} "
            f"(expected {getattr(hint, '__name__', hint)})"
        ) from None


def _coerce_leaf(hint, value: Any):
    """`value` as the (non-union) annotation `hint` says; TypeError or ValueError if it cannot be."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        return _to_tuple(value, args[0] if args else str)
    converter = _CONVERTERS.get(origin or hint)
    return converter(value) if converter else value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings (values parsed as YAML) to a nested dict."""
    values = dict(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{_shown(item)}' is not of the form key=value (e.g. train.epochs=5)")
        dotted, raw = item.split("=", 1)
        try:
            parsed = parse_yaml(raw) if raw else ""
        except ValueError as error:
            raise ConfigError(
                f"override '{_shown(dotted)}': the value is not valid YAML ({error})",
                "quote the whole --set, e.g. --set 'data.crop_scale=[0.2, 1.0]'",
            ) from None
        node = values
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = parsed
    return values


def merge(base: dict, update: dict) -> dict:
    """Deep-merge `update` into a copy of `base`."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_config_text(path: Path) -> str:
    """The text of a config file; only a regular file is read (a device such as /dev/zero or a
    FIFO could block or never end)."""
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist", CONFIG_FILE_HINT)
    if not path.is_file():
        raise ConfigError(f"config file {path} is not a regular file", CONFIG_FILE_HINT)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"cannot read config file {path} as UTF-8 text ({type(error).__name__})", CONFIG_FILE_HINT
        ) from None


def load_yaml(path: str | Path) -> dict:
    """Read a YAML config file into a dict (an error names the file if it is missing or bad)."""
    path = Path(path)
    try:
        values = parse_yaml(_read_config_text(path))
    except ValueError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if values is None:
        raise ConfigError(f"config file {path} is empty", CONFIG_FILE_HINT)
    if not isinstance(values, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at the top level", "e.g. `train: {epochs: 5}`, as in jobs/*.yaml"
        )
    return values


def build(
    cls,
    preset: Any,
    file_values: dict | None = None,
    flag_values: dict | None = None,
    overrides: list[str] | None = None,
):
    """The one way a config is made: a preset (a config object or a dict), then the YAML file's
    values, then the command's flags, then `key=value` overrides, then validated as a whole (each
    section validates itself when it is made, presets included)."""
    values = to_dict(preset) if dataclasses.is_dataclass(preset) else dict(preset or {})
    values = merge(values, file_values or {})
    values = merge(values, flag_values or {})
    values = apply_overrides(values, overrides or [])
    return from_dict(cls, values)

"""Reading params.yaml into typed sections: `load(XConfig, path)` builds a section with `XConfig(**params[section])`
and so fails on a misspelled key; `Section.__post_init__` casts values to the annotated types (DVC's `-S lr=1e-6`
is written as `1e-06`, which PyYAML reads as a string) and collects the range problems of `check()`. All problems
of a section are reported at once, each naming its key."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_type_hints

import yaml

from rewardkit.errors import UserError

PARAMS_FILE = "params.yaml"  # DVC's default params file, in the directory a stage runs in


def _cast(value: Any, kind: type, key: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected a number, got {value!r}") from None
        if kind is int:
            if number != int(number):
                raise ValueError(f"{key}: expected a whole number, got {value!r}")
            return int(number)
        return number
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return value
    return value


class Section:
    """Base of the typed sections: casts fields, collects range errors from `check()`."""

    section: ClassVar[str]

    def __post_init__(self) -> None:
        problems = []
        for name, kind in get_type_hints(type(self)).items():
            if name == "section":
                continue
            try:
                object.__setattr__(self, name, _cast(getattr(self, name), kind, f"{self.section}.{name}"))
            except ValueError as e:
                problems.append(str(e))
        if not problems:
            problems = [f"{self.section}.{p}" for p in self.check()]
        if problems:
            raise UserError(f"{PARAMS_FILE}: " + "; ".join(problems))

    def check(self) -> list[str]:
        """Range checks: return 'key: what is wrong' strings (key without the section prefix)."""
        return []


S = TypeVar("S", bound=Section)


# Range rules for `check()`: each returns the problems it finds, as "key: what is wrong, got value" strings.
def at_least(cfg: Section, low: float, *keys: str) -> list[str]:
    return [f"{key}: must be at least {low}, got {getattr(cfg, key)}" for key in keys if getattr(cfg, key) < low]


def within(cfg: Section, key: str, low: float, high: float, interval: str = "[]") -> list[str]:
    """`interval` says which ends are included: "[]", "[)", "(]" or "()"."""
    value = getattr(cfg, key)
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[1] == "]" else value < high
    return [] if above and below else [f"{key}: must be in {interval[0]}{low}, {high}{interval[1]}, got {value}"]


def one_of(cfg: Section, key: str, choices: tuple | list) -> list[str]:
    value = getattr(cfg, key)
    return [] if value in choices else [f"{key}: must be one of {', '.join(map(str, choices))}, got {value!r}"]


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            params = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise UserError(f"{path} not found: run from the project root") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(params, dict):
        raise UserError(f"{path} must be a mapping of sections")
    return params


def build(cls: type[S], params: dict) -> S:
    """`cls(**params[cls.section])`, with unknown or mistyped keys reported by name."""
    values = params.get(cls.section) or {}
    if not isinstance(values, dict):
        raise UserError(f"{PARAMS_FILE}: section {cls.section!r} must be a mapping")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{PARAMS_FILE}: unknown key(s) {', '.join(cls.section + '.' + k for k in unknown)}; "
                        f"valid keys: {', '.join(sorted(known))}")
    return cls(**values)


def load(cls: type[S], path: str | Path = PARAMS_FILE) -> S:
    return build(cls, load_params(path))

"""Validation helpers for the frozen filter configs: every error names its parameter."""
from typing import Optional


class FilterConfigError(ValueError):
    """A filter parameter is invalid; the message names the config class and the parameter."""


def check_fraction(owner: str, name: str, value: Optional[float]) -> None:
    """``value`` is ``None`` (rule off) or a number in [0, 1]."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise FilterConfigError(f"{owner}.{name} must be a number in [0, 1] or null, got {value!r}")


def check_count(owner: str, name: str, value: Optional[int], minimum: int = 0) -> None:
    """``value`` is ``None`` (rule off) or an int >= ``minimum``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FilterConfigError(f"{owner}.{name} must be an integer >= {minimum} or null, got {value!r}")


def check_positive(owner: str, name: str, value: Optional[float]) -> None:
    """``value`` is ``None`` (rule off) or a number > 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise FilterConfigError(f"{owner}.{name} must be a number > 0 or null, got {value!r}")


def check_bool(owner: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise FilterConfigError(f"{owner}.{name} must be true or false, got {value!r}")

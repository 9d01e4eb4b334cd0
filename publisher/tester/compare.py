"""Recursive subset comparison of an example's ``expect`` with the actual result, with a readable diff."""

from __future__ import annotations

import json
import math
from typing import Any


def subset_differences(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Where ``actual`` does not contain ``expected``; empty when it does.

    Objects: every expected key must be present with a matching value (extra keys are fine).
    Lists: same length, element by element. Numbers compare by value (``9300 == 9300.0``).
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {_show(actual)}"]
        diffs: list[str] = []
        for key, value in expected.items():
            where = f"{path}.{key}"
            if key not in actual:
                diffs.append(f"{where}: missing (expected {_show(value)})")
            else:
                diffs.extend(subset_differences(value, actual[key], where))
        return diffs
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected a list, got {_show(actual)}"]
        if len(expected) != len(actual):
            return [f"{path}: expected {len(expected)} items, got {len(actual)}: {_show(actual)}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in subset_differences(e, a, f"{path}[{i}]")
        ]
    if _is_number(expected) and _is_number(actual):
        if math.isclose(expected, actual, rel_tol=1e-9, abs_tol=0.0):
            return []
    elif expected == actual and type(expected) is type(actual):
        return []
    return [f"{path}: expected {_show(expected)}, got {_show(actual)}"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"

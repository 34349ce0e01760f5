"""`--set KEY=VALUE`: one parser for every command, so an override means the same in `build`, `plan` and `train`.

KEY is dotted (`output.out`, `train.max_steps`); VALUE is read as YAML, which also reads JSON (numbers, booleans,
lists, `null`), and kept as text when it does not parse.
"""

from __future__ import annotations

import yaml


class OverrideError(ValueError):
    """A malformed --set item, or one that puts a value where a section is."""


def parse_assignments(items: list[str] | None) -> dict:
    """['a.b=1', 'c=x'] -> {'a.b': 1, 'c': 'x'}."""
    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise OverrideError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def apply_overrides(data: dict, overrides: dict, skip_none: bool = False) -> dict:
    """Set each dotted key in `data` (in place, and returned), creating sections on the way."""
    for dotted, value in overrides.items():
        if value is None and skip_none:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise OverrideError(f"--set {dotted}: {p} is not a section")
        node[leaf] = value
    return data

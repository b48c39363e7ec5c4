"""What every `--json` of `python -m resnet_core` prints: standard JSON (RFC 8259) for the tools that script against
it. A number that is not finite (a diverged run's loss, a far point of a loss landscape) becomes null, not Python's
`NaN` or `Infinity`, which JSON parsers (jq, JavaScript's JSON.parse) refuse."""
from __future__ import annotations

import json
import math


def json_text(value) -> str:
    """`value` (dicts, lists, strings, numbers, None) as indented standard JSON."""
    return json.dumps(_finite(value), indent=2, allow_nan=False)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value

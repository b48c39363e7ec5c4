"""The Train page's presets (resnet_core.presets) with the length each trains on this server (explorer.speed)."""
from __future__ import annotations

from explorer import speed
from resnet_core.presets import DEFAULT, PRESETS, Preset, matching  # noqa: F401 (the pages' way to the table)


def length(preset: Preset) -> int:
    """The preset's length here: the longest that fits the demo's budget, never below its measured minimum (that
    minimum while this server's speed is being measured)."""
    lengths = speed.preset_lengths()
    return lengths[preset.label].iterations if lengths else preset.minimum_iterations


def why(preset: Preset) -> str | None:
    """One sentence on the length it picked here, or None while measuring."""
    lengths = speed.preset_lengths()
    return lengths[preset.label].reason() if lengths else None

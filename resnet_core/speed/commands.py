"""The `calibrate` and `presets` subcommands of `python -m resnet_core`: measure this server's speed, and show each
preset's length and wall time here.

    python -m resnet_core calibrate
    python -m resnet_core presets --json

The parser is built without importing torch (every command builds it); the handlers import the speed modules.
"""
from __future__ import annotations

import argparse

from ..json_output import json_text


def add_speed_commands(commands, with_home) -> None:
    """Add `calibrate` and `presets`, with their handlers as `handler` defaults, to `commands` (argparse subparsers)."""
    calibrate = with_home(commands.add_parser(
        "calibrate", help="measure this server's training speed (~20 s) for the time estimates",
        description="Trains ResNet-20 and ResNet-56 for a few seconds on synthetic images, one process per slot at "
                    "once as the app's runs train, and keeps their images/s in the data folder (speeds.json), where "
                    "every finished run adds its own. Estimates calibrate by themselves when they first need it; "
                    "run this again after changing the machine's threads or slots."))
    calibrate.add_argument("--json", action="store_true", help="print the measurements as a JSON list")
    calibrate.set_defaults(handler=_calibrate)
    presets = with_home(commands.add_parser(
        "presets", help="each preset's length on this server and how long its runs take here",
        description="For each preset of the Train page: the longest length whose runs, started together, fit "
                    "$RESNET_EXPLORER_DEMO_MINUTES (default 6) on this server, and never shorter than the length at "
                    "which its effect was measured to show (docs/SHORT_RUNS.md). Calibrates first if needed."))
    presets.add_argument("--json", action="store_true", help="print a JSON list of objects with label, nets, "
                         "iterations, minimum_iterations and estimated_s (the runs' wall time here, at once)")
    presets.set_defaults(handler=_presets)


def _calibrate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .calibrate import calibrate
    from .estimate import here

    conditions = here()
    measured = calibrate(conditions, args.home)
    if args.json:
        print(json_text([asdict(measurement) for measurement in measured]))
        return 0
    print(f"{measured[0].machine}: {conditions.describe()}")
    for measurement in measured:
        print(f"  {measurement.net:<9} training {measurement.train_images_per_s:7.0f} images/s, testing "
              f"{measurement.test_images_per_s:7.0f} images/s, start-up {measurement.overhead_s:.1f} s")
    return 0


def _presets(args: argparse.Namespace) -> int:
    from .estimate import describe_seconds
    from .fit import preset_lengths

    lengths = preset_lengths(args.home)
    if args.json:
        print(json_text([length.to_dict() for length in lengths]))
        return 0
    print(f"{'preset':<34} {'iterations':>10} {'minimum':>8} {'time here':>10}")
    for length in lengths:
        print(f"{length.preset.label:<34} {length.iterations:>10,} {length.preset.minimum_iterations:>8,} "
              f"{describe_seconds(length.estimated_s):>10}{'' if length.fits else '  (over the budget)'}")
    print(f"budget {describe_seconds(lengths[0].budget_s)} per preset ($RESNET_EXPLORER_DEMO_MINUTES); speeds: "
          f"{lengths[0].basis}")
    return 0

"""Argument types the commands of `python -m resnet_core` share (argparse refuses a bad value in one line, exit 2)."""
from __future__ import annotations

import argparse

# Seeds are mixed with epochs and iterations (training.augment: seed * 1,000,003 + …) before torch takes them as a
# 64-bit integer, and the store keeps them in SQLite's: below 2**32 every such sum fits.
MAX_SEED = 2**32 - 1


def seed(text: str) -> int:
    """--seed: a whole number from 0 to MAX_SEED."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to {MAX_SEED:,}; got {text!r}")
    return value


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """--quiet: no live progress line (there is none either when stderr is not a terminal)."""
    parser.add_argument("--quiet", action="store_true", help="no live progress line on the terminal (there is none "
                        "either when the output is not a terminal); the printed results stay as they are")

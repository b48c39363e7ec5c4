"""The speeds measured on this machine, kept in the data folder (`speeds.json`): per net, device, precision and
torch threads, from a calibration (`calibrate`) or from a finished run (`meter`).

A data folder copied to another machine keeps its measurements but they are not used there: every measurement
names the machine it was made on (`this_machine`), and only this machine's count.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from ..home import resolve_home

BOOK_NAME = "speeds.json"
KEPT = 400  # the newest measurements kept: ~2 per run, so a busy server's book stays a few hundred kB
CALIBRATION = "calibration"  # a measurement's `source` when `calibrate` made it; a run's is "run <id>"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conditions:
    """What a speed depends on besides the net: where it trains, in which precision, on how many torch threads, and
    how many runs share the machine at once (a calibration loads it as that many runs do)."""

    device: str  # cpu | cuda
    precision: str  # fp32 | bf16
    threads: int
    slots: int

    def describe(self) -> str:
        runs = f"{self.slots} run{'s' * (self.slots > 1)} at once"
        threads = f"{self.threads} thread{'s' * (self.threads > 1)} each"
        return f"{self.device}, {self.precision}, {runs}, {threads}"


@dataclass(frozen=True)
class Measurement:
    net: str  # a spec's name, e.g. resnet56
    device: str
    precision: str
    threads: int
    train_images_per_s: float  # training steps alone: forward, backward, update
    test_images_per_s: float  # a test pass, checkpoint after it included
    overhead_s: float  # a run's fixed cost: process start, imports, data, first step's warm-up
    source: str  # CALIBRATION or "run <id>"
    machine: str  # this_machine() where it was measured
    measured_at: float  # unix seconds

    def measured_under(self, conditions: Conditions) -> bool:
        return (self.device, self.precision, self.threads) == (conditions.device, conditions.precision,
                                                                conditions.threads)

    def matches(self, net: str, conditions: Conditions) -> bool:
        return self.net == net and self.measured_under(conditions)


def this_machine() -> str:
    """The processor (or GPU) and core count that speeds depend on, e.g. "AMD EPYC 9R14 96-Core Processor, 2 cores"."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform's name stands
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        if gpu != "" and torch.cuda.is_available():
            name += f" + {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass  # readers of the book need no torch
    return f"{name}, {os.cpu_count() or 1} cores"


def book_path(home: str | os.PathLike | None = None) -> Path:
    return resolve_home(home) / BOOK_NAME


def measurements(home: str | os.PathLike | None = None, machine: str | None = None) -> list[Measurement]:
    """This machine's measurements (or `machine`'s), oldest first; a damaged book reads as empty, with a warning."""
    machine = machine or this_machine()
    path = book_path(home)
    try:
        rows = json.loads(path.read_text()) if path.exists() else []
        return [measurement for measurement in map(lambda row: Measurement(**row), rows)
                if measurement.machine == machine]
    except (ValueError, TypeError) as error:
        logger.warning("The speed book %s cannot be read (%s); speeds are measured again.", path, error)
        return []


def record(new: list[Measurement], home: str | os.PathLike | None = None) -> None:
    """Add `new` to the book; runs ending at once each add theirs (a lock serialises them, a rename publishes)."""
    path = book_path(home)
    with _locked(path):
        try:
            rows = json.loads(path.read_text()) if path.exists() else []
        except ValueError as error:
            logger.warning("The speed book %s was damaged (%s); it starts again.", path, error)
            rows = []
        rows = (rows + [asdict(measurement) for measurement in new])[-KEPT:]
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps(rows, indent=0))
        os.replace(scratch, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield

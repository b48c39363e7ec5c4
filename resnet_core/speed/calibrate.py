"""A short measurement of this server's speed, made the first time an estimate needs one (~20 s).

    measurements = calibrate(conditions)        # also added to the data folder's book

Starts one `probe` process per slot at once (CALIBRATION_NETS in turn), each with the runs' threads, so the
machine is as loaded as when its slots all train: two 1-thread runs on a 2-core server each go slower than one
alone. Two nets are enough for every CIFAR net: a step's cost is linear in its mult-adds (`estimate`).
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from itertools import cycle, islice

from ..errors import UserError
from . import book
from .book import Conditions, Measurement

CALIBRATION_NETS = ("resnet20", "resnet56")  # the demo's shallow and deep nets; others are interpolated
PROBE_SECONDS = 6.0  # of timed training steps per probe: ~5 steps of ResNet-56 on one slow core
MAX_PROBES = 8  # at once: beyond this a machine's slots are alike, and each probe holds ~300 MB
PROBE_TIMEOUT_S = 300


def calibrate(conditions: Conditions, home: str | os.PathLike | None = None) -> list[Measurement]:
    """Measure CALIBRATION_NETS under `conditions` and add them to the book; the new measurements. When another
    process is calibrating this data folder already, waits for it and returns what it measured."""
    path = book.book_path(home)
    with open(path.with_suffix(".calibrating"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the other calibration's results are in the book once it lets go
            return latest_calibration(conditions, home)
        measured = _probe_all(conditions)
        book.record(measured, home)
        return measured


def latest_calibration(conditions: Conditions, home: str | os.PathLike | None = None) -> list[Measurement]:
    """The newest calibration's measurements under `conditions` (empty: never calibrated so)."""
    found: dict[str, Measurement] = {}
    for measurement in book.measurements(home):
        if measurement.source == book.CALIBRATION and measurement.measured_under(conditions):
            found[measurement.net] = measurement
    return list(found.values())


def _probe_all(conditions: Conditions) -> list[Measurement]:
    at_once = max(1, min(conditions.slots, MAX_PROBES))
    nets = list(islice(cycle(CALIBRATION_NETS), max(at_once, len(CALIBRATION_NETS))))
    results: dict[str, list[dict]] = {net: [] for net in CALIBRATION_NETS}
    for first in range(0, len(nets), at_once):  # one slot: the nets one after the other
        wave = nets[first:first + at_once]
        probes = [(net, _start_probe(net, conditions)) for net in wave]
        for net, process in probes:
            try:
                output, errors = process.communicate(timeout=PROBE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                raise UserError(f"Measuring this server's speed took over {PROBE_TIMEOUT_S} s for {net}; the "
                                "machine is overloaded.") from None
            if process.returncode:
                raise RuntimeError(f"The speed probe of {net} failed (exit {process.returncode}): "
                                   f"{errors.strip().splitlines()[-1] if errors.strip() else 'no message'}")
            results[net].append(json.loads(output))
    now = time.time()
    machine = book.this_machine()
    return [Measurement(net=net, device=conditions.device, precision=conditions.precision, threads=conditions.threads,
                        **{key: sum(row[key] for row in rows) / len(rows) for key in rows[0]},
                        source=book.CALIBRATION, machine=machine, measured_at=now)
            for net, rows in results.items()]


def _start_probe(net: str, conditions: Conditions) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": str(conditions.threads)}
    return subprocess.Popen(
        [sys.executable, "-m", "resnet_core.speed.probe", "--net", net, "--device", conditions.device,
         "--precision", conditions.precision, "--threads", str(conditions.threads), "--seconds", str(PROBE_SECONDS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)

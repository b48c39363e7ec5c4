"""A run's own speeds, measured from the records it yields as it trains: what the executor adds to the book.

    meter = RunMeter(run_id, "resnet56", recipe, test_images=10_000, device="cpu", precision="fp32", threads=1,
                     started=time.monotonic())        # None for a resumed run: its overhead is not a start's
    for record in train(...):
        meter.see(record)
    measurement = meter.measurement()     # None when too little was trained to tell

It reads a classifier's records (`training.train`) and a segmenter's (`pixels.segment_train`) alike, by their
`kind`; a segmenter's speeds are scenes per second, under its own name (`pixels.jobs.speed_name`). The time between
two training records is a step; a test point (and the checkpoint after it) falls between the training records
around it, so that gap, less a step, is the test pass (the last one ends the run). From `started`
(before the run's data is loaded) to the first step is the run's overhead: data, model, the first step's warm-up;
starting a process and its imports come before it, and the queue's warm spares have done them already. A resumed
run is not measured: its start is not a new run's.
"""
from __future__ import annotations

import time

from ..training.recipe import Recipe
from ..training.train import RunEnd
from .book import Measurement, this_machine

MIN_STEPS = 20  # timed steps: fewer tell too little to keep


class RunMeter:
    def __init__(self, run_id: int, net: str, recipe: Recipe, *, test_images: int, device: str, precision: str,
                 threads: int, started: float | None) -> None:
        self.run_id, self.net, self.recipe, self.test_images = run_id, net, recipe, test_images
        self.device, self.precision, self.threads = device, precision, threads
        self.started = started  # time.monotonic()
        self.overhead_s: float | None = None
        self.last_train: float | None = None
        self.tested_at: int | None = None  # the iteration of a test pass since the last training record
        self.steps, self.step_s = 0, 0.0
        self.tested_images, self.test_s = 0, 0.0

    def see(self, record) -> None:
        now = time.monotonic()
        kind = getattr(record, "kind", None)
        if kind == "test":
            self.tested_at = record.iteration
        elif isinstance(record, RunEnd) and self.tested_at is not None and self.last_train is not None:
            self._tested(now - self.last_train)
        if kind != "train":
            return
        if self.last_train is None:
            if self.started is not None:
                self.overhead_s = now - self.started
        elif self.tested_at is None:
            self.steps += 1
            self.step_s += now - self.last_train
        elif self.steps:
            self._tested(now - self.last_train - self.step_s / self.steps)
        self.last_train, self.tested_at = now, None

    def _tested(self, seconds: float) -> None:
        self.test_s += max(0.0, seconds)
        self.tested_images += self.recipe.test_images(self.tested_at, self.test_images)

    def measurement(self) -> Measurement | None:
        if self.steps < MIN_STEPS or self.overhead_s is None or not self.tested_images:  # too little to tell
            return None
        return Measurement(net=self.net, device=self.device, precision=self.precision, threads=self.threads,
                           train_images_per_s=self.steps * self.recipe.batch_size / self.step_s,
                           test_images_per_s=self.tested_images / max(self.test_s, 1e-6), overhead_s=self.overhead_s,
                           source=f"run {self.run_id}", machine=this_machine(), measured_at=time.time())

"""This server's speed for the pages: how long planned runs take here and each preset's length, measuring the
server once in the background the first time a page needs it (resnet_core.speed).

A page never waits for the measurement (~20 s): until it is in the data folder's book, the functions here return
None and `waiting_for` says why; the Train page reruns itself once the numbers are there.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import streamlit as st

from resnet_core.errors import UserError
from resnet_core.explain.jobs import images_through
from resnet_core.nets.specs import NetSpec
from resnet_core.presets import PRESETS
from resnet_core.runs import admission
from resnet_core.runs.schema import Run
from resnet_core.runs.settings import demo_minutes, resolve_home
from resnet_core.speed import book, calibrate
from resnet_core.speed.book import Conditions
from resnet_core.pixels import jobs as segment_jobs
from resnet_core.speed.estimate import (Estimate, describe_seconds, estimate_experiments, estimate_planned, here,
                                        run_seconds, run_speed)
from resnet_core.speed.fit import PresetLength, fit
from resnet_core.training.recipe import Recipe

logger = logging.getLogger(__name__)
MEASURING = "Measuring this server's speed (once, about 20 s) to say how long runs take here…"

_measuring: dict[tuple[Path, Conditions], threading.Thread] = {}
_failures: dict[tuple[Path, Conditions], str] = {}
_guard = threading.Lock()


def _measurements(conditions: Conditions | None = None) -> list[book.Measurement]:
    """This machine's measurements, starting the calibration in the background if none is there yet."""
    waiting_for(conditions)
    return book.measurements(resolve_home())


def experiment_conditions() -> Conditions:
    """The experiments' conditions here: on the CPU in fp32 (explain.jobs queues them so), with the runs' threads."""
    return dataclasses.replace(here(), device="cpu", precision="fp32")


def waiting_for(conditions: Conditions | None = None) -> str | None:
    """None once this server's speed under `conditions` (default: its runs') is in the book; else why not:
    `MEASURING` (the calibration is started in the background, once per data folder, conditions and server at a
    time; its own lock keeps it to one per folder), or the sentence of its failure."""
    home, conditions = resolve_home(), conditions or here()
    if calibrate.latest_calibration(conditions, home):
        return None
    key = (home, conditions)
    with _guard:
        if key in _failures:
            return _failures[key]
        if not (key in _measuring and _measuring[key].is_alive()):
            _measuring[key] = threading.Thread(target=_calibrate, args=key, daemon=True, name="speed-calibration")
            _measuring[key].start()
    return MEASURING


def _calibrate(home: Path, conditions: Conditions) -> None:
    try:
        calibrate.calibrate(conditions, home)
    except Exception as error:  # the pages say so instead of an estimate; the server goes on
        logger.exception("Measuring this server's speed failed")
        _failures[home, conditions] = f"This server's speed could not be measured ({error}); no time estimates."


@st.cache_data(ttl=60, show_spinner=False)
def _sizes(source: str) -> tuple[int, int]:
    """(training, test) images of a source; an image folder is listed at most once a minute, not on every poll."""
    return admission.dataset_shape(source)[1], admission.test_images_of(source)


def planned(models: list[str], data: str, **settings) -> Estimate | None:
    """How long Start would take here with these settings (admission.planned_runs'), all the runs at once; None
    while the settings cannot be trained (Start says why) or the speeds are being measured (`waiting_for`)."""
    try:
        runs = admission.planned_runs(models, data, **settings)
        train_images, test_images = _sizes(data)
    except UserError:
        return None
    return estimate_planned(runs, here(), _measurements(), train_images=train_images, test_images=test_images)


def queued(run: Run) -> float | None:
    """A queued run's wall time here once it starts; None when unknown (a segmentation run: until a run of its kind
    has finished here, as scenes cost what no classifier's calibration says)."""
    if run.kind == segment_jobs.KIND:
        speed = run_speed(segment_jobs.speed_name(run), here(), _measurements())
        settings = segment_jobs.SegmentationSettings.from_dict(run.settings)
        return None if speed is None else run_seconds(Recipe.from_dict(run.recipe), speed,
                                                      train_images=settings.train_scenes,
                                                      test_images=settings.test_scenes)
    try:
        train_images, test_images = _sizes(run.data)
    except UserError:  # its folder is gone: the run will fail and say so
        return None
    estimate = estimate_planned([(NetSpec.from_dict(run.spec), Recipe.from_dict(run.recipe))], here(),
                                _measurements(), train_images=train_images, test_images=test_images)
    return None if estimate is None else estimate.seconds


def preset_lengths() -> dict[str, PresetLength] | None:
    """Each preset's length on this server by label, within $RESNET_EXPLORER_DEMO_MINUTES; None while measuring."""
    conditions, found = here(), _measurements()
    lengths = [fit(preset, conditions, found, 60 * demo_minutes()) for preset in PRESETS]
    return None if None in lengths else {length.preset.label: length for length in lengths}


def experiments(kind: str, specs: list[NetSpec], **settings) -> Estimate | None:
    """How long Start would take here for experiments of `kind` on nets of `specs` with `settings`, all at once;
    None while the speeds are being measured (`waiting_for(experiment_conditions())`)."""
    conditions = experiment_conditions()
    return estimate_experiments(specs, [images_through(kind, spec, **settings) for spec in specs], conditions,
                                _measurements(conditions))


def budget_text() -> str:
    return describe_seconds(60 * demo_minutes())

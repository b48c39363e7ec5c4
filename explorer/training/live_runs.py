"""The runs a page follows live, read from the store on each poll: status, progress and curves.

Metric rows are cached per run (shared by every session, fetched incrementally with `after_iteration`); the cache
is only a cache: clearing it or restarting the app refetches from the store.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from explorer import identity, url_state
from explorer.run_service import model_label, net_label, status_text, store
from explorer.training.charts import RunCurves
from resnet_core.explain import catalog
from resnet_core.runs import dispatch
from resnet_core.runs.schema import ACTIVE, METRIC_COLUMNS, RESUMABLE, TRAINING_KINDS, Run
from resnet_core.runs.store import Store


def shown_run_ids(state_key: str) -> list[int]:
    """The runs a page shows: those its URL or session names, else this person's queued and running runs (a tab
    opened afresh, or a Start whose answer never reached the page, still finds them)."""
    run_ids = url_state.remembered_ids(state_key, "runs")
    if run_ids:
        return run_ids
    owner = identity.user_id()
    return [run.id for run in store().runs() if run.owner == owner and run.status in ACTIVE]


class _MetricCache:
    """Metric rows per run, fetched incrementally. A new process of a run (a resume) rewrites rows after its
    checkpoint, so its rows are fetched afresh. The runs polled longest ago are dropped once all hold more than
    MAX_ROWS rows: a server that stays up for many workshops must not hold every run it ever showed (a 64k-iteration
    run is ~64k rows, ~40 MB), while a room's hundred short runs (a few hundred rows each) all stay and the Class page
    does not re-read them on every refresh."""

    MAX_ROWS = 400_000  # ~250 MB of row dicts

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: OrderedDict[tuple[str, int], tuple[int | None, dict[str, list[dict]]]] = OrderedDict()
        self._rows = 0  # held in all runs

    def rows(self, db: Store, run: Run) -> dict[str, list[dict]]:
        key = (str(db.home), run.id)
        with self._lock:
            pid, by_kind = self._runs.pop(key, (None, None))
            if by_kind is not None:
                self._rows -= _row_count(by_kind)
            if by_kind is None or pid != run.pid:
                by_kind = {"train": [], "test": []}
            # Per kind: a flush may carry iteration i's training row before its test row.
            last = {kind: rows[-1]["iteration"] if rows else -1 for kind, rows in by_kind.items()}
            for row in db.metrics(run.id, after_iteration=min(last.values())):
                kind = "train" if row["kind"] == "train" else "test"
                if row["iteration"] > last[kind]:
                    by_kind[kind].append(row)
            self._runs[key] = (run.pid, by_kind)  # the newest end
            self._rows += _row_count(by_kind)
            while self._rows > self.MAX_ROWS and len(self._runs) > 1:  # the run just read always stays
                _, (_, dropped) = self._runs.popitem(last=False)
                self._rows -= _row_count(dropped)
            return {kind: list(rows) for kind, rows in by_kind.items()}


def _row_count(by_kind: dict[str, list[dict]]) -> int:
    return sum(map(len, by_kind.values()))


@st.cache_resource
def _metric_cache() -> _MetricCache:
    return _MetricCache()


@dataclass(frozen=True)
class RunState:
    """What a page shows about one run right now."""

    run: Run
    label: str  # e.g. "#3 ResNet-8"
    status: str  # the store's status, or "interrupted", "stopping", "queued #2"
    iterations_done: int
    images_per_s: float | None
    eta_s: float | None
    curves: RunCurves

    @property
    def progress(self) -> float:
        return min(self.iterations_done / self.run.recipe["iterations"], 1.0)

    @property
    def can_cancel(self) -> bool:
        return self.run.status in ACTIVE and self.status != "stopping"

    @property
    def can_resume(self) -> bool:
        return self.run.status in RESUMABLE


def metric_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


def poll(run_ids: list[int]) -> list[RunState]:
    """The runs that still exist, with their curves: reads only (the server's dispatcher advances the queue)."""
    db = store()
    positions = dispatch.queue_positions(db)
    existing = {run.id: run for run in db.runs(references=True, kinds=TRAINING_KINDS)}  # segmentation runs too
    states = []
    for run_id in run_ids:
        run = existing.get(run_id)
        if run is None:
            continue
        rows = _metric_cache().rows(db, run)
        last = rows["train"][-1] if rows["train"] else None
        label = f"{net_label(run.model)} reference" if run.reference else f"#{run.id} {model_label(run)}"
        states.append(RunState(
            run=run, label=label, status=status_text(db, run, positions),
            iterations_done=last["iteration"] if last else 0,
            images_per_s=last["images_per_s"] if last else None,
            eta_s=last["eta_s"] if last and run.status == "running" else None,
            curves=RunCurves(run.id, label, metric_frame(rows["train"]), metric_frame(rows["test"]))))
    return states


def references_behind(states: list[RunState]) -> list[RunCurves]:
    """The reference curves to draw behind live runs: for each run of a net with a shipped reference, trained on
    CIFAR-10, the reference's training and test error in the run's colour, its x in the run's iterations (scaled
    by the batch sizes, so both count the same images) and up to the run's length. One per net."""
    curves, seen = [], set()
    for state in states:
        run = state.run
        if (run.reference or run.kind != "train" or run.model not in catalog.REFERENCE_NAMES or run.model in seen
                or not _cifar10(run.data)):  # a segmentation run's curves are not a classifier's
            continue
        try:
            reference = catalog.reference(run.model)
            history = reference.history()
        except catalog.ReferenceError:  # named at the top of the Runs page; the live run is drawn regardless
            continue
        seen.add(run.model)
        scale = reference.recipe["batch_size"] / run.recipe["batch_size"]
        history = history.assign(iteration=history["iteration"] * scale)
        history = history[history["iteration"] <= run.recipe["iterations"]]
        train, test = (history[history["kind"] == kind].reset_index(drop=True) for kind in ("train", "test"))
        curves.append(RunCurves(run.id, reference.legend, train, test, reference=True))
    return curves


def _cifar10(source: str) -> bool:
    """CIFAR-10 itself, or an image folder of it (the references were trained on a JPEG copy)."""
    return source == "cifar10" or "cifar10" in Path(source).name.lower().replace("-", "")


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def progress_text(state: RunState) -> str:
    """`120/400 iterations · 530 img/s · ETA 1m 05s`, as far as known."""
    parts = [f"{state.iterations_done:,}/{state.run.recipe['iterations']:,} iterations"]
    if state.images_per_s:
        parts.append(f"{state.images_per_s:,.0f} img/s")
    if state.eta_s is not None:
        parts.append(f"ETA {duration_text(state.eta_s)}")
    return " · ".join(parts)

"""Launch, control and poll training runs for the pages, through the run store and its job queue (resnet_core.runs).

Pages keep only run ids; everything else is read from the store on each poll. Metric rows are cached per
run (shared by every session, fetched incrementally with `after_iteration`); the cache is only a cache:
clearing it or restarting the app refetches from the store.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from explorer import teacher, url_state
from explorer.training_charts import RunCurves

from resnet_core.training.recipe import TEST_POINTS
from resnet_core.errors import UserError
from resnet_core.explain import catalog
from resnet_core.runs import queue, workers
from resnet_core.runs.schema import ACTIVE, METRIC_COLUMNS, RESUMABLE, DamagedRunError, Run, Status
from resnet_core.runs.settings import max_concurrent_runs, resolve_home, runs_per_user, threads_per_run
from resnet_core.runs.store import Store
from resnet_core.training.data import cifar_folder

logger = logging.getLogger(__name__)
_local = threading.local()
AUTO_TEST_POINTS = f"auto: {TEST_POINTS} times a run, at most once an epoch"  # training_recipe's rule, in words
XSRF_COOKIE = "_streamlit_xsrf"


def store() -> Store:
    """This thread's store of the data folder ($RESNET_EXPLORER_HOME): a SQLite connection is per thread. Keeps
    the server's dispatcher of that folder going while pages use it."""
    home = resolve_home()
    stores = _local.__dict__.setdefault("stores", {})
    if home not in stores:
        stores[home] = Store(home)
    _dispatcher(str(home)).keep_alive()
    _references_added(str(home))
    return stores[home]


@st.cache_resource
def _references_added(home: str) -> tuple[str, ...]:
    """The shipped reference nets, added to this data folder's store once per server as read-only runs; one line
    per reference file that is missing or damaged (the pages show them and go on without it)."""
    db = Store(home)
    try:
        problems = catalog.add_references_to(db)
    finally:
        db.close()
    for problem in problems:
        logger.warning("%s", problem)
    return tuple(problems)


def reference_problems() -> tuple[str, ...]:
    return _references_added(str(resolve_home()))


@st.cache_resource(on_release=queue.Dispatcher.stop)
def _dispatcher(home: str) -> queue.Dispatcher:
    """One per data folder and server: it advances the queue, so that page polls only read. Stopped when the cache
    is cleared (the app's "Clear cache"): no thread is left serving the folder beside the next one."""
    return queue.Dispatcher(Path(home))


def shown_run_ids(state_key: str) -> list[int]:
    """The runs a page shows: those its URL or session names, else this person's queued and running runs (a tab
    opened afresh, or a Start whose answer never reached the page, still finds them)."""
    run_ids = url_state.remembered_ids(state_key, "runs")
    if run_ids:
        return run_ids
    owner = user_id()
    return [run.id for run in store().runs() if run.owner == owner and run.status in ACTIVE]


def devices() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


# ------------------------------------------------------------------------------------------- actions
def start(models: list[str], data: str, **settings) -> list[int]:
    """Queue one run per net with the same settings (queue.submit_all's) for this person, then dispatch; all or
    none are queued."""
    run_ids = queue.submit_all(models, data, owner=user_id(), store=store(), **settings)
    queue.dispatch(store())
    return run_ids


def recipe_line(models: list[str], data: str, **settings) -> str | None:
    """The line saying which recipe Start would train `models` with, one per net only where they differ (§4.2
    warms up ResNet-110 alone); None while the settings cannot be trained (Start then says why)."""
    try:
        planned = queue.planned_runs(models, data, **settings)
    except UserError:
        return None
    lines = {recipe.describe(): [] for _, recipe in planned}
    for spec, recipe in planned:
        lines[recipe.describe()].append(net_label(spec.name))
    if len(lines) == 1:
        return next(iter(lines), None)
    return "; ".join(f"{' and '.join(nets)}: {line}" for line, nets in lines.items())


def user_id() -> str:
    """Who is asking, for the per-person run limit: a hash of this browser's XSRF token, else of this session.

    Streamlit sets the `_streamlit_xsrf` cookie on a browser's first page load and keeps it, so one id covers the
    reloads, pages and tabs of one browser, while each other browser (each person) gets its own. The cookie is
    `2|mask|masked token|time` (Tornado's format); the unmasked token is what stays fixed.
    """
    cookie = st.context.cookies.get(XSRF_COOKIE)
    if not isinstance(cookie, str) or not cookie:  # no XSRF protection, or an AppTest: one id per session
        return st.session_state.setdefault("user_id", f"session-{uuid.uuid4().hex[:16]}")
    parts = cookie.split("|")
    try:
        mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
        secret = bytes(byte ^ mask[index % 4] for index, byte in enumerate(masked))
    except (IndexError, ValueError):
        secret = cookie.encode()
    return "browser-" + hashlib.sha256(secret).hexdigest()[:16]


def warm_up() -> None:
    """Keep warm training processes waiting (resnet_core.runs.workers spares), so a run started here shows its
    first point ~3 s sooner."""
    workers.keep_spares(store())


def act(action: str, run_id: int) -> tuple[bool, str]:
    """Run `cancel`, `resume` or `delete` on a run; (done, one-line message for the user). A person controls their
    own runs and the CLI's; only the teacher controls other people's (a shared link shows them their buttons)."""
    try:
        try:
            owner = store().run(run_id).owner
        except DamagedRunError:  # unreadable, owner included: whoever is shown its warning may delete it, as before
            owner = None
        if owner not in (None, user_id()) and not teacher.is_teacher():
            return False, f"Run {run_id} is someone else's; only they or the teacher can {action} it."
        return True, getattr(queue, action)(run_id, store())
    except UserError as error:
        return False, str(error)


def limits_text() -> str:
    """What this server lets a run and a person do: the CPU limits, the cap and the threads, the per-person limit."""
    return (f"On a CPU-only server a run is limited to depth {queue.CPU_MAX_DEPTH} and "
            f"{queue.CPU_MAX_IMAGES:,} training images ({queue.CPU_MAX_EPOCHS} CIFAR-10 epochs). "
            f"{max_concurrent_runs()} runs train at a time with "
            f"{threads_per_run()} torch thread(s) each; more wait in a queue. Each person may have "
            f"{runs_per_user()} runs queued or running at once.")


def cifar10_note() -> str | None:
    """How CIFAR-10 will be obtained, when it is not in the data folder yet; None once it is."""
    folder = cifar_folder("cifar10", store().home)
    if (folder / "data_batch_1").is_file():
        return None
    return (f"CIFAR-10 is not here yet: the first run downloads it once (170 MB) into {folder.parent}. Offline, put "
            f"the official cifar-10-python.tar.gz or its extracted {folder.name} folder there.")


# ------------------------------------------------------------------------------------------- polling
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


def net_label(model: str) -> str:
    """`ResNet-20` or `plain-20` for the paper's names; other names as they are."""
    for prefix, shown in (("resnet", "ResNet-"), ("plain", "plain-")):
        if model.startswith(prefix) and model[len(prefix):].isdigit():
            return shown + model[len(prefix):]
    return model


def status_text(db: Store, run: Run, positions: dict[int, int]) -> str:
    """The status a page shows: the store's, or "reference", "stopping", "queued #2"."""
    if run.reference:  # the badge of a shipped, read-only run
        return "reference"
    if run.status == Status.QUEUED:  # positions are read apart from the run: it may have started or come meanwhile
        return f"queued #{positions[run.id]}" if run.id in positions else "queued"
    if run.status == Status.STARTING:  # its process is on its way (a second at most): for a person, it runs
        return str(Status.RUNNING)
    if run.status == Status.RUNNING and queue.cancel_requested(db, run):
        return "stopping"
    return str(run.status)


def metric_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


def poll(run_ids: list[int]) -> list[RunState]:
    """The runs that still exist, with their curves: reads only (the server's dispatcher advances the queue)."""
    db = store()
    positions = queue.queue_positions(db)
    existing = {run.id: run for run in db.runs(references=True)}
    states = []
    for run_id in run_ids:
        run = existing.get(run_id)
        if run is None:
            continue
        rows = _metric_cache().rows(db, run)
        last = rows["train"][-1] if rows["train"] else None
        label = f"{net_label(run.model)} reference" if run.reference else f"#{run.id} {net_label(run.model)}"
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
        if run.reference or run.model not in catalog.REFERENCE_NAMES or run.model in seen or not _cifar10(run.data):
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

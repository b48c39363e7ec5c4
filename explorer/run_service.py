"""Start and control training runs for the pages, through the run store and its job queue (resnet_core.runs).

Every page reaches the store through `store()`, which also keeps the server's dispatcher of the data folder going:
the dispatcher advances the queue, so that pages only read, launch and cancel. Pages keep only run ids; everything
else is read from the store when they need it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import streamlit as st

from explorer import identity
from resnet_core.errors import UserError
from resnet_core.explain import catalog
from resnet_core.runs import admission, control, dispatch
from resnet_core.runs.admission import Limits
from resnet_core.runs.launchers import cluster, local
from resnet_core.runs.schema import DamagedRunError, Run, Status
from resnet_core.runs.settings import (max_concurrent_runs, ray_address, resolve_home, runs_per_user, this_node,
                                       threads_per_run)
from resnet_core.runs.store import BUSY, Store
from resnet_core.training.data import cifar_folder
from resnet_core.training.recipe import TEST_POINTS

logger = logging.getLogger(__name__)
AUTO_TEST_POINTS = f"auto: {TEST_POINTS} times a run, at most once an epoch"  # training_recipe's rule, in words


def store() -> Store:
    """The store of the data folder ($RESNET_EXPLORER_HOME); cheap, as its database's engine and connection pool are
    the process's and shared by every thread. Keeps the server's dispatcher of that folder going while pages use
    it."""
    home = resolve_home()
    _dispatcher(str(home)).keep_alive()
    _references_added(str(home))
    return Store(home)


@st.cache_resource
def _references_added(home: str) -> tuple[str, ...]:
    """The shipped reference nets, added to this data folder's store once per server as read-only runs; one line
    per reference file that is missing or damaged (the pages show them and go on without it)."""
    problems = catalog.add_references_to(Store(home))
    for problem in problems:
        logger.warning("%s", problem)
    return tuple(problems)


def reference_problems() -> tuple[str, ...]:
    return _references_added(str(resolve_home()))


@st.cache_resource(on_release=dispatch.Dispatcher.stop)
def _dispatcher(home: str) -> dispatch.Dispatcher:
    """One per data folder and server: it advances the queue, so that page polls only read. Stopped when the cache
    is cleared (the app's "Clear cache"): no thread is left serving the folder beside the next one."""
    return dispatch.Dispatcher(Path(home))


def devices() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


# ------------------------------------------------------------------------------------------- actions
def start(models: list[str], data: str, **settings) -> list[int]:
    """Queue one run per net with the same settings (admission.submit_all's) for this person, within the server's
    limits, then dispatch; all or none are queued."""
    run_ids = admission.submit_all(models, data, owner=identity.user_id(), store=store(), limits=server_limits(),
                                   **settings)
    dispatch.dispatch(store())
    return run_ids


def recipe_line(models: list[str], data: str, **settings) -> str | None:
    """The line saying which recipe Start would train `models` with, one per net only where they differ (§4.2
    warms up ResNet-110 alone); None while the settings cannot be trained (Start then says why)."""
    try:
        planned = admission.planned_runs(models, data, **settings)
    except UserError:
        return None
    lines = {recipe.describe(): [] for _, recipe in planned}
    for spec, recipe in planned:
        lines[recipe.describe()].append(net_label(spec.name))
    if len(lines) == 1:
        return next(iter(lines), None)
    return "; ".join(f"{' and '.join(nets)}: {line}" for line, nets in lines.items())


def warm_up() -> None:
    """Keep warm training processes waiting (resnet_core.runs.launchers.local spares), so a run started here shows its
    first point ~3 s sooner; none on a cluster, whose runs never start on this server."""
    if not ray_address():
        local.keep_spares(store())


def act(action: str, run_id: int) -> tuple[bool, str]:
    """Run `cancel`, `resume` or `delete` on a run; (done, one-line message for the user). A person controls their
    own runs and the CLI's; only the teacher controls other people's (a shared link shows them their buttons)."""
    try:
        try:
            owner = store().run(run_id).owner
        except DamagedRunError:  # unreadable, owner included: whoever is shown its warning may delete it, as before
            owner = None
        if owner not in (None, identity.user_id()) and not identity.is_teacher():
            return False, f"Run {run_id} is someone else's; only they or the teacher can {action} it."
        if action == "resume":
            return True, control.resume(run_id, store(), limits=server_limits())
        return True, getattr(control, action)(run_id, store())
    except UserError as error:
        return False, str(error)


def server_limits() -> Limits:
    """The limits every person's runs meet: the server's settings, and on a cluster its slots as its dispatcher last
    counted them."""
    slots = cluster.recorded_capacity(store())[0] if ray_address() else 0
    return Limits.workshop(cap=slots or None)


def idle_cores() -> int:
    """The cores no run of this data folder is training on here now, at least one: what a page's one heavy forward
    pass may take without slowing a run. A run holds its threads on this machine unless it is known to run on
    another (a cluster's worker, another server of a shared database)."""
    here = this_node()
    busy = sum(run.status in BUSY and run.node in (None, here) for run in store().active_runs())
    return max(1, (os.cpu_count() or 1) - busy * threads_per_run())


def limits_text() -> str:
    """What this server lets a run and a person do: the CPU limits, the slots (on a cluster: its machines and how many
    are free) and the threads, the per-person limit."""
    if ray_address():
        slots, machines = cluster.recorded_capacity(store())
        where = (f"{slots} runs train at a time on {machines} machine{'s' * (machines != 1)} of the cluster "
                 f"({max(slots - store().count_running(), 0)} free), with {threads_per_run()} thread(s) each")
    else:
        where = f"{max_concurrent_runs()} runs train at a time with {threads_per_run()} torch thread(s) each"
    return (f"On a CPU-only server a run is limited to depth {admission.CPU_MAX_DEPTH} and "
            f"{admission.CPU_MAX_IMAGES:,} training images ({admission.CPU_MAX_EPOCHS} CIFAR-10 epochs). "
            f"{where}; more wait in a queue. Each person may have {runs_per_user()} runs queued or running at once.")


def cifar10_note() -> str | None:
    """How CIFAR-10 will be obtained, when it is not in the data folder yet; None once it is."""
    folder = cifar_folder("cifar10", store().home)
    if (folder / "data_batch_1").is_file():
        return None
    return (f"CIFAR-10 is not here yet: the first run downloads it once (170 MB) into {folder.parent}. Offline, put "
            f"the official cifar-10-python.tar.gz or its extracted {folder.name} folder there.")


# ------------------------------------------------------------------------------------------- how runs are named
def net_label(model: str) -> str:
    """`ResNet-20` or `plain-20` for the paper's names; other names as they are."""
    for prefix, shown in (("resnet", "ResNet-"), ("plain", "plain-")):
        if model.startswith(prefix) and model[len(prefix):].isdigit():
            return shown + model[len(prefix):]
    return model


def model_label(run: Run) -> str:
    """What a run trained: `ResNet-20`, or for a segmentation run its head on its backbone, `FCN · ResNet-20`
    (`FCN-16s · …` with the skip, `… (frozen)` when the backbone did not learn)."""
    if run.kind != "segment":
        return net_label(run.model)
    settings = run.settings or {}
    head = "FCN-16s" if settings.get("skip") else "FCN"
    return f"{head} · {net_label(run.model)}{' (frozen)' if settings.get('freeze') else ''}"


def status_text(db: Store, run: Run, positions: dict[int, int]) -> str:
    """The status a page shows: the store's, or "reference", "stopping", "queued #2"."""
    if run.reference:  # the badge of a shipped, read-only run
        return "reference"
    if run.status == Status.QUEUED:  # positions are read apart from the run: it may have started or come meanwhile
        return f"queued #{positions[run.id]}" if run.id in positions else "queued"
    if run.status == Status.STARTING:  # its process is on its way (a second at most): for a person, it runs
        return str(Status.RUNNING)
    if run.status == Status.RUNNING and run.cancel_requested:
        return "stopping"
    return str(run.status)

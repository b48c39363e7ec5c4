"""Slow experiments as jobs of the run queue: a lesion study or a loss landscape of a trained net, queued like a
training run (the same cap, the same per-person limit, its own process that outlives the page that started it),
each measured step written to the store as it comes so a page can draw it live.

    run_ids = submit_experiments("lesion", ["reference:plain56", "reference:resnet56"], "cifar10", images=1000)
    Store().results(run_ids[0])        # [{"type": "baseline", …}, {"type": "block", "block": "layer1.0", …}, …]

An experiment run is a row of the runs table with its kind and settings in `experiment`; the queue starts it as
it starts any run (`python -m resnet_core train --run-id ID`), and that process hands it to `run_experiment`.
Cancelling it stops it between two steps; resuming it measures again from the first.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator

from ..errors import UserError
from ..runs import queue
from ..runs.schema import Status
from ..runs.store import Store
from ..training.recipe import Recipe
from .trained import probe_data, trained_model

logger = logging.getLogger(__name__)

KINDS = ("lesion", "landscape")


def submit_experiments(kind: str, models: list[str], data: str, *, owner: str | None = None,
                       store: Store | None = None, seed: int = 0, **settings) -> list[int]:
    """Queue one `kind` experiment per model (a run id, `reference:NET` or a checkpoint path) on `data`, all or
    none, for `owner` (the app's per-person limit applies); their run ids. Checked first, in one line each: the
    kind, each model (a CIFAR net of this project), the data's classes against each model's, and the settings."""
    if kind not in KINDS:
        raise UserError(f"Unknown experiment {kind!r}; allowed: {', '.join(KINDS)}.")
    store = store or Store()
    classes = queue.dataset_shape(data)[0]
    runs = []
    for name in models:
        model = trained_model(name, store.home)
        if model.spec.num_classes != classes:
            raise UserError(f"{data} has {classes} classes but {name} ({model.spec.name}) was trained on "
                            f"{model.spec.num_classes}; pick the dataset it was trained on.")
        _check_settings(kind, model, seed=seed, **settings)
        runs.append(dict(name=f"{kind}: {name}", spec=model.spec.to_dict(), recipe=Recipe().to_dict(), data=data,
                         device="cpu", precision="fp32", seed=seed,
                         experiment={"kind": kind, "model": name, "seed": seed, **settings}))
    run_ids = store.create_runs(runs, owner=owner, **queue.workshop_limits())
    queue.dispatch(store)
    return run_ids


def _check_settings(kind: str, model, **settings) -> None:
    """Refuse settings the experiment would refuse, before anything is queued."""
    _steps(kind)[1](model, **settings)


def _steps(kind: str) -> tuple[Callable[..., Iterator[dict]], Callable[..., None]]:
    """The experiment's steps as JSON-ready dicts, and its settings check."""
    if kind == "lesion":
        from .lesion import check_lesion_settings, iter_lesions

        return (lambda model, data, **settings: (piece.to_dict() for piece in iter_lesions(model, data, **settings)),
                check_lesion_settings)
    from .landscape import check_landscape_settings, iter_landscape_rows

    return (lambda model, data, **settings: (row.to_dict() for row in iter_landscape_rows(model, data, **settings)),
            check_landscape_settings)


def run_experiment(store: Store, run, should_stop: Callable[[], bool]) -> str:
    """Measure experiment `run` (this process has confirmed it), writing each step to the store; its final status.
    A UserError (e.g. the data gone) fails the run with its message, and is raised again for the CLI."""
    settings = dict(run.experiment)
    kind, name = settings.pop("kind"), settings.pop("model")
    store.clear_results(run.id)
    try:
        model = trained_model(name, store.home)
        data = probe_data(model, run.data, store.home)
        steps, _ = _steps(kind)
        for step, payload in enumerate(steps(model, data, **settings)):
            store.add_result(run.id, step, payload)
            if should_stop():
                store.finish(run.id, Status.CANCELLED, f"Cancelled after {step + 1} steps; resume it to measure "
                                                       "again from the start.")
                return Status.CANCELLED
    except UserError as error:
        store.finish(run.id, Status.FAILED, str(error))
        raise
    store.finish(run.id, Status.FINISHED)
    return Status.FINISHED

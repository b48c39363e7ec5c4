"""Slow experiments as jobs of the run queue: a lesion study or a loss landscape of a trained net, queued like a
training run (the same cap, the same per-person limit, its own process that outlives the page that started it),
each measured step written to the store as it comes so a page can draw it live.

    run_ids = submit_experiments("lesion", ["reference:plain56", "reference:resnet56"], "cifar10", images=1000)
    Store().results(run_ids[0])        # [{"type": "baseline", …}, {"type": "block", "block": "layer1.0", …}, …]

An experiment run is a row of the runs table with its kind and settings in `experiment`; the queue starts it as
it starts any job, and `runs.executor` records the steps `experiment_steps` measures. Cancelling it stops it between
two steps; resuming it measures again from the first.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from ..errors import UserError
from ..nets.specs import NetSpec
from . import landscape, lesion
from ..runs import admission, dispatch
from ..runs.admission import Limits
from ..runs.store import Store
from ..training.recipe import Recipe
from .trained import probe_data, trained_model

KINDS = ("lesion", "landscape")


def submit_experiments(kind: str, models: list[str], data: str, *, owner: str | None = None,
                       store: Store | None = None, limits: Limits | None = None, seed: int = 0,
                       **settings) -> list[int]:
    """Queue one `kind` experiment per model (a run id, `reference:NET` or a checkpoint path) on `data`, all or
    none, for `owner` within `limits` (a shared server's: the app passes them); their run ids. Checked first, in
    one line each: the kind, each model (a CIFAR net of this project), the data's classes against each model's,
    and the settings."""
    if kind not in KINDS:
        raise UserError(f"Unknown experiment {kind!r}; allowed: {', '.join(KINDS)}.")
    store = store or Store()
    classes = admission.dataset_shape(data)[0]
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
    run_ids = store.create_runs(runs, owner=owner, **(limits.room() if limits else {}))
    dispatch.dispatch(store)
    return run_ids


def images_through(kind: str, spec: NetSpec, **settings) -> int:
    """About how many images an experiment pushes through the whole net, for its time estimate: a lesion study
    passes its test images once intact, once per deleted block from that block on (half the net on average), and
    once per random draw; a landscape passes its training images once per point."""
    if kind == "lesion":
        blocks = sum(spec.blocks_per_stage)
        passes = 1 + blocks / 2 + settings.get("random_k", 0) * settings.get("draws", 10)
        return round((settings.get("images") or lesion.DEFAULT_IMAGES) * passes)
    points = settings.get("points", 41) ** settings.get("dims", 1)
    return (settings.get("images") or landscape.DEFAULT_IMAGES) * points


def _check_settings(kind: str, model, *, seed: int, **settings) -> None:
    """Refuse, before anything is queued, settings the experiment would refuse whatever the data; what depends on
    the data (e.g. more images than it has) is checked again by the job, which fails with the library's message."""
    whole = {name: value for name, value in settings.items() if name != "span"}
    wrong = [f"{name}={value!r}" for name, value in whole.items() if not isinstance(value, int) or value < 0]
    if wrong:
        raise UserError(f"The {kind} settings must be whole numbers of at least 0; got {', '.join(wrong)}.")
    if kind == "lesion":
        from .lesion import lesion_sites

        blocks = len(lesion_sites(model))  # a plain net whose blocks cannot be deleted: its one-line UserError
        if settings.get("images", 1) < 1 or settings.get("draws", 1) < 1 or settings.get("random_k", 0) > blocks:
            raise UserError(f"A lesion study takes at least 1 test image and 1 draw, and deletes at most the "
                            f"{blocks} blocks of {model.spec.name} at once; got {settings}.")
    else:
        from .landscape import MAX_POINTS

        if settings.get("dims", 1) not in (1, 2) or not 2 <= settings.get("points", 41) <= MAX_POINTS \
                or settings.get("images", 1) < 1 or not settings.get("span", 1.0) > 0:
            raise UserError(f"A loss landscape takes dims 1 or 2, 2 to {MAX_POINTS} points per axis, at least 1 "
                            f"image and a positive span; got {settings}.")


def _steps(kind: str, model, data, **settings) -> Iterator[dict]:
    """The experiment's measurements as JSON-ready steps, in the order they come (explorer.experiments reads them):
    lesion: baseline, each block, each random draw; landscape: its axes, then each row."""
    if kind == "lesion":
        from .lesion import BlockLesion, IntactNet, iter_lesions

        for record in iter_lesions(model, data, **settings):
            kind_of = "baseline" if isinstance(record, IntactNet) else "block" if isinstance(record, BlockLesion) \
                else "random"
            yield {"type": kind_of, **asdict(record)}
        return
    from .landscape import axis, iter_landscape_rows

    alphas = axis(settings.get("points", 41), settings.get("span", 1.0))
    rows = iter_landscape_rows(model, data, **settings)  # bad settings raise here, before the axes are written
    yield {"type": "axes", "alphas": alphas, "betas": alphas if settings.get("dims", 1) == 2 else None}
    for row in rows:
        yield {"type": "row", "row": row.index, "loss": row.loss, "error": row.error}


def experiment_steps(run, home: Path) -> Iterator[dict]:
    """The measured steps of experiment `run` (a row of the runs table), in order, its model and data read from the
    data folder `home` first; a UserError (e.g. the data gone) says why it cannot go on."""
    settings = dict(run.experiment)
    kind, name = settings.pop("kind"), settings.pop("model")
    model = trained_model(name, home)
    yield from _steps(kind, model, probe_data(model, run.data, home), **settings)

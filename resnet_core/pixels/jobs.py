"""Segmentation runs as jobs of the run queue: a segmenter trained on composed scenes is queued, executed and recorded
as a classifier's training run is (the same cap and limits, live curves, a checkpoint), and scored again on demand.

    run_id = submit_segmentation("reference:resnet56", "cifar10", iterations=300, freeze=True)
    Store().metrics(run_id, "test")                          # [{"iteration": 60, "error": 0.31, "miou": 0.18, …}, …]
    evaluate_segmentation_run(Store(), run_id).to_dict()     # pixel accuracy, mIoU, IoU per class, background share

A segmentation run is a row of the runs table of kind `segment`: its backbone's NetSpec as its spec (so it is
labelled as its net is), its recipe (`segment_train.segmentation_recipe`), the scenes' source dataset as its data,
and the rest (`SegmentationSettings`) in its `settings`. `runs.executor` trains it with `SegmentationJob`; the
recorder writes a train row per iteration and a test row per test point (the pixel error as `error`, and `miou`)
and, after each test point and when a cancel stops it, the segmenter with where its training stood
(`segmenter.save_segmenter`) as the run's checkpoint. A run resumed (after a cancel, or a process killed) goes on
from that checkpoint and records the same rows an uninterrupted run would have, each once.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..errors import UserError
from ..explain.trained import trained_model
from ..nets.specs import NetSpec, get_spec
from ..runs import admission, dispatch
from ..runs.admission import Limits
from ..runs.schema import Run
from ..runs.store import Store
from ..training.data import ImageData, load_data, storage
from ..training.device import pick_precision
from ..training.recipe import Recipe
from .scenes import SceneLayout, Scenes, check_counts, compose_scenes
from .segment_train import (DEFAULT_BATCH_SIZE, DEFAULT_LR, SegmentationReport, SegmentRecord,
                            evaluate_segmentation, segmentation_recipe, train_segmentation)
from .segmenter import (ALLOWED_BACKBONES, RANDOM_BACKBONE, SegmenterSpec, build_segmenter, load_backbone,
                        load_segmenter, load_segmenter_training)

logger = logging.getLogger(__name__)
KIND = "segment"  # the runs table's job kind (runs.schema.JOB_KINDS)
RANDOM_PREFIX = f"{RANDOM_BACKBONE}:"  # random:NET, a backbone trained from scratch
BACKBONE_HELP = ("reference:NET (a shipped net: resnet20, resnet56, plain20, plain56), a training run's id, a "
                 "classifier checkpoint's path, or random:NET for a backbone trained from scratch (He's "
                 "initialisation, §3.4) of any CIFAR net of §4.2 (random:resnet56, random:plain56, …)")
DEFAULT_TRAIN_SCENES, DEFAULT_TEST_SCENES = 10_000, 2_000
# A scenes source may also be named as the scenes it makes: `cifar10-scenes` is the scenes of `cifar10`.
SCENES_SUFFIX = "-scenes"
SOURCE_IMAGE_SIDE = 32  # pixels: the scenes paste the source's images as CIFAR nets read them, then resize them


@dataclass(frozen=True)
class SegmentationSettings:
    """What a segmentation run trains on and from, beyond its spec, recipe, data and seed: the runs table's
    `settings`."""

    backbone: str  # reference:NET, a run id, a checkpoint's absolute path, or random:NET
    freeze: bool = False  # train the head alone (Segmenter.freeze_backbone)
    skip: bool = False  # FCN-16s's skip from the second-to-last stage
    train_scenes: int = DEFAULT_TRAIN_SCENES
    test_scenes: int = DEFAULT_TEST_SCENES
    scenes_seed: int = 0  # which scenes: the same for every run of a comparison, whatever its own seed
    layout: SceneLayout = field(default_factory=SceneLayout)

    def __post_init__(self) -> None:
        check_counts(self.train_scenes, self.test_scenes)

    @property
    def backbone_source(self) -> str:
        """What `segmenter.load_backbone` takes: the backbone as given, or `random` for random:NET."""
        return RANDOM_BACKBONE if self.backbone.startswith(RANDOM_PREFIX) else self.backbone

    def scenes(self, data: ImageData) -> Scenes:
        return compose_scenes(data, self.layout, train_count=self.train_scenes, test_count=self.test_scenes,
                              seed=self.scenes_seed)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SegmentationSettings":
        # JSON turns the layout's tuples into lists.
        layout = {name: tuple(value) if isinstance(value, list) else value for name, value in data["layout"].items()}
        return cls(**{**data, "layout": SceneLayout(**layout)})


def backbone_spec(backbone: str, home: str | os.PathLike | None = None) -> NetSpec:
    """The net `backbone` (BACKBONE_HELP) names, its checkpoint loaded to read it (`explain.trained.trained_model`); a
    one-line UserError for a name that is none of those, a net that is not one of this project's CIFAR nets, or a run
    or a file that is not a classifier's. An ImageNet net named after random: passes: `SegmenterSpec` refuses it."""
    if backbone.startswith(RANDOM_PREFIX):
        try:
            return get_spec(backbone[len(RANDOM_PREFIX):])
        except ValueError:
            raise UserError(f"Unknown backbone {backbone!r}; after {RANDOM_PREFIX} name {ALLOWED_BACKBONES}.") \
                from None
    if not (backbone.startswith("reference:") or backbone.lstrip("-").isdigit() or Path(backbone).is_file()):
        raise UserError(f"Unknown backbone {backbone!r}; allowed: {BACKBONE_HELP}.")
    return trained_model(backbone, home).spec


def _recorded_backbone(backbone: str) -> str:
    """The backbone as a run records it: a checkpoint by its absolute path, so the run's process (started in
    another folder) finds it; anything else as given."""
    if backbone.startswith(("reference:", RANDOM_PREFIX)) or backbone.lstrip("-").isdigit():
        return backbone
    return str(Path(backbone).resolve())


def submit_segmentation(backbone: str, scenes_from: str, *, iterations: int, freeze: bool = False,
                        skip: bool = False, seed: int = 0, train_scenes: int = DEFAULT_TRAIN_SCENES,
                        test_scenes: int = DEFAULT_TEST_SCENES, scenes_seed: int = 0,
                        layout: SceneLayout = SceneLayout(), batch_size: int = DEFAULT_BATCH_SIZE,
                        lr: float = DEFAULT_LR, eval_every: int | None = None, device: str = "cpu",
                        precision: str | None = None, name: str | None = None, owner: str | None = None,
                        store: Store | None = None, limits: Limits | None = None,
                        taken_by: int | None = None) -> int:
    """Queue one segmentation run: an FCN head (`skip`: FCN-16s) on `backbone` (BACKBONE_HELP), frozen or not,
    trained for `iterations` on scenes of `scenes_from` (a dataset source of `training.data`); its id.

    Checked first, each in one line, without decoding an image: the backbone (a CIFAR net; a checkpoint's header and
    weights are read), the scenes' source, counts and layout, the recipe, and, as `admission.submit_all` checks a
    classifier's run, the memory it needs and `limits` (a shared server's: the app passes them; a 64-pixel scene
    counts as four CIFAR images). `taken_by`: the pid of the process that trains it itself (the CLI), recorded
    running for it at once; otherwise the queue is dispatched, so it starts when a slot is free.
    """
    store = store or Store()
    admission.check_device(device)
    data = admission.recorded_source(scene_source(scenes_from))
    classes = admission.dataset_shape(data)[0]
    net = backbone_spec(backbone, store.home)
    settings = SegmentationSettings(_recorded_backbone(backbone), freeze, skip, train_scenes, test_scenes,
                                    scenes_seed, layout)
    spec = SegmenterSpec(net, classes + 1, skip)  # the background and the dataset's classes; refuses ImageNet nets
    recipe = segmentation_recipe(spec, train_scenes, iterations=iterations, batch_size=batch_size, lr=lr,
                                 eval_interval=eval_every)
    admission.check_fits(net.replace(input_size=layout.canvas), recipe, device, train_scenes,
                         cpu_server=limits is not None and limits.cpu_server)
    frozen = "frozen " if freeze else ""
    row = dict(name=name or f"{spec.name} ({frozen}{backbone}) on {scenes_from} scenes", spec=net.to_dict(),
               recipe=recipe.to_dict(), data=data, device=device,
               precision=pick_precision(torch.device(device), precision), seed=seed, kind=KIND,
               settings=settings.to_dict())
    [run_id] = store.create_runs([row], owner=owner, taken_by=taken_by, **(limits.room() if limits else {}))
    if taken_by is None:
        dispatch.dispatch(store)
    return run_id


class SegmentationJob:
    """What segmentation run `run` trains, from its row: its scenes, composed from `data` (default: its source
    loaded from the data folder `home`), and its segmenter, its backbone loaded (and frozen, if asked); with
    `checkpoint` (the run's latest file), the segmenter saved there and where its training stood."""

    def __init__(self, run: Run, home: str | os.PathLike, data: ImageData | None = None,
                 checkpoint: Path | None = None) -> None:
        self.run = run
        settings = SegmentationSettings.from_dict(run.settings)
        self.scenes = settings.scenes(data or _source(run.data, home))
        segmenter = build_segmenter(NetSpec.from_dict(run.spec), len(self.scenes.classes), skip=settings.skip,
                                    seed=run.seed)
        saved, self.resume = load_segmenter_training(checkpoint) if checkpoint is not None else (None, None)
        if self.resume is None:
            if saved is not None:  # a file of an older version, saved only at the run's end
                logger.info("Run %s: its segmenter file does not say where its training stood; it trains again "
                            "from the start.", run.id)
            segmenter = load_backbone(segmenter, settings.backbone_source, home, freeze=settings.freeze)
        else:  # its own weights: the backbone's source is not read again (it may be gone since)
            segmenter.load_state_dict(saved.state_dict())
            segmenter.normalization = saved.normalization
            if settings.freeze:
                segmenter.freeze_backbone()
        self.segmenter = segmenter

    @property
    def resumed_at(self) -> int:
        """The iteration it goes on from: 0 for a run that starts (again) from scratch."""
        return self.resume.iteration if self.resume else 0

    def train(self, *, device: str | None, should_stop: Callable[[], bool]) -> Iterator[SegmentRecord]:
        recipe = Recipe.from_dict(self.run.recipe)
        return train_segmentation(self.segmenter, self.scenes, iterations=recipe.iterations,
                                  batch_size=recipe.batch_size, lr=recipe.lr, seed=self.run.seed, device=device,
                                  precision=self.run.precision, eval_interval=recipe.eval_interval,
                                  should_stop=should_stop, resume=self.resume)

    def metadata(self) -> dict:
        """What the saved segmenter's file says besides its weights: the scenes' classes, in label order."""
        return {"classes": list(self.scenes.classes)}


def scene_source(name: str) -> str:
    """The dataset source whose images scenes named `name` paste: `cifar10` for `cifar10` or `cifar10-scenes`, an
    image folder's path as given."""
    return name.removesuffix(SCENES_SUFFIX) if name.endswith(SCENES_SUFFIX) and not Path(name).is_dir() else name


def speed_name(run: Run) -> str:
    """What the speed book (resnet_core.speed) calls segmentation run `run`'s kind of work, as its speeds differ from
    its backbone's as a classifier: `fcn-resnet20 frozen on 64-px scenes`."""
    settings = SegmentationSettings.from_dict(run.settings)
    spec = SegmenterSpec(NetSpec.from_dict(run.spec), 2, settings.skip)  # the classes cost next to nothing
    return f"{spec.name}{' frozen' if settings.freeze else ''} on {settings.layout.canvas}-px scenes"


def _source(source: str, home: str | os.PathLike | None) -> ImageData:
    return load_data(source, **storage("cifar", SOURCE_IMAGE_SIDE), home=home)


def evaluate_segmentation_run(store: Store, run_id: int, *, device: str | None = None) -> SegmentationReport:
    """The scores of segmentation run `run_id`'s saved segmenter on its own test scenes, composed again; a one-line
    UserError for a run of another kind or one that has not saved its segmenter yet."""
    run = store.run(run_id)
    if run.kind != KIND:
        raise UserError(f"Run {run_id} is a {run.kind} run, not a segmentation run; `python -m resnet_core runs "
                        "--json` gives each run's kind.")
    latest = store.latest_checkpoint(run_id)
    if latest is None:
        raise UserError(f"Run {run_id} ({run.status}) has no segmenter yet; a segmentation run saves it when it "
                        "ends.")
    segmenter, _ = load_segmenter(latest[1])
    return evaluate_segmentation(segmenter, run_test_scenes(run, store.home), device=device)


def run_test_scenes(run: Run, home: str | os.PathLike | None) -> Scenes:
    """The test scenes segmentation run `run` was scored on, composed again from its source in the data folder `home`.
    One train scene, not thousands: each split draws from a stream of its own (scenes), so the test scenes are those
    the run tested on whatever the train count."""
    settings = SegmentationSettings.from_dict(run.settings)
    return compose_scenes(_source(run.data, home), settings.layout, train_count=1, test_count=settings.test_scenes,
                          seed=settings.scenes_seed)

"""Every trained model the app can use, listed the way torchvision lists its weights: the reference nets shipped in
`resnet_core/reference/` (docs/REFERENCE_NETS.md), the 4-epoch demo nets, finished runs of the store, and
torchvision's ImageNet weights found in the local torch cache.

    for entry in available_models(Store()):
        print(entry.name, entry.test_error, entry.path)
    reference("resnet56").history()   # its whole training and test history, as its run store recorded it

A reference is a model file (weights plus what its export measured: test report, Fig. 7 stds, gradient norms)
and its metric history; each is checked when read, and a missing or damaged file is one line naming it.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..nets.specs import NetSpec
from ..runs.schema import METRIC_COLUMNS, Status
from ..training.checkpoint import CheckpointError, read_metadata
from ..training.recipe import Recipe
from .classifier import DEMO_NAMES, IMAGENET_NAMES, demo_path, imagenet_weights, imagenet_weights_path

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
REFERENCE_NAMES = ("plain20", "resnet20", "plain56", "resnet56")
REFERENCE_DATA = "CIFAR-10 JPEG copy"  # what they were trained and tested on (docs/REFERENCE_NETS.md)


class ReferenceError(UserError):
    """A shipped reference file that is missing or cannot be read."""


@dataclass(frozen=True)
class Reference:
    """A reference net: the model file, its metric history and the numbers its export measured."""

    model: str  # the spec's name, e.g. "resnet56"
    path: Path
    history_path: Path
    test_error: float  # fraction, on the 10,000 test images
    recipe: dict  # Recipe.to_dict()
    metadata: dict  # everything the export recorded

    @property
    def iterations(self) -> int:
        return self.recipe["iterations"]

    @property
    def label(self) -> str:
        """`ResNet-56 reference`."""
        name = self.model
        for prefix, shown in (("resnet", "ResNet-"), ("plain", "plain-")):
            if name.startswith(prefix):
                name = shown + name[len(prefix):]
        return f"{name} reference"

    @property
    def epochs(self) -> int:
        """Passes over CIFAR-10's 50,000 training images (a last partial batch of each is dropped)."""
        return round(self.iterations * self.recipe["batch_size"] / 50_000)

    @property
    def recipe_text(self) -> str:
        """What it was trained with, in words: `Paper's recipe: 4,680 iterations of 128; lr 0.1, then ÷10 at
        2,340 and 3,510 (12 epochs)`."""
        return f"{Recipe.from_dict(self.recipe).describe()} ({self.epochs} epochs)"

    @property
    def legend(self) -> str:
        """`ResNet-56 reference (12 epochs, lr ÷10 at 50 % and 75 %)`: what a faint curve behind a run is."""
        milestones = self.recipe.get("lr_milestones") or ()
        steps = " and ".join(f"{100 * milestone / self.iterations:.0f} %" for milestone in milestones)
        return f"{self.label} ({self.epochs} epochs{f', lr ÷10 at {steps}' if steps else ''})"

    def history(self) -> pd.DataFrame:
        """Every metric row its run recorded (METRIC_COLUMNS; errors as fractions), in iteration order."""
        try:
            stamp = self.history_path.stat().st_mtime_ns
        except OSError as error:
            raise ReferenceError(f"The reference history {self.history_path} is missing ({error.strerror}).") from None
        return _history(self.history_path, stamp)


@lru_cache(maxsize=len(REFERENCE_NAMES))
def _history(path: Path, _stamp: int) -> pd.DataFrame:
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError, EOFError) as error:  # missing, truncated gzip, not CSV
        raise ReferenceError(f"The reference history {path} is missing or damaged ({error}).") from None
    missing = [column for column in ("iteration", "kind", "error") if column not in history.columns]
    if missing or history.empty:
        raise ReferenceError(f"The reference history {path} lacks {', '.join(missing) or 'rows'}.")
    return history.reindex(columns=list(METRIC_COLUMNS))


def reference(model: str) -> Reference:
    """The shipped reference of `model` (one of REFERENCE_NAMES); ReferenceError when it is not there or damaged."""
    if model not in REFERENCE_NAMES:
        raise ReferenceError(f"No reference net {model!r}; shipped: {', '.join(REFERENCE_NAMES)}.")
    return _reference(model)


def _reference(model: str) -> Reference:  # a header read (~1 ms): uncached, so a file put back is seen
    path = REFERENCE_DIR / f"{model}.safetensors"
    try:
        metadata = read_metadata(path)
        recipe = Recipe.from_dict(metadata["run"]["recipe"]).to_dict()
        spec = NetSpec.from_dict(metadata["spec"])
        test_error = float(metadata["test_error"])
    except CheckpointError as error:
        raise ReferenceError(f"The reference model {path} is missing or damaged: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise ReferenceError(f"The reference model {path} lacks its recipe, spec or test error ({error}).") from None
    if spec.name != model:
        raise ReferenceError(f"The reference model {path} holds {spec.name}, not {model}.")
    return Reference(model, path, REFERENCE_DIR / f"{model}-metrics.csv.gz", test_error, recipe, metadata)


def references() -> tuple[list[Reference], list[str]]:
    """The shipped references that can be read, and one line per file that cannot."""
    found, problems = [], []
    for model in REFERENCE_NAMES:
        try:
            found.append(reference(model))
        except ReferenceError as error:
            problems.append(str(error))
    return found, problems


@dataclass(frozen=True)
class ModelEntry:
    """One model of `available_models`: `name` is the id the app's pickers use."""

    name: str  # reference:resnet56, demo:resnet20, run:3, imagenet:resnet50
    model: str  # the spec's name
    source: str  # reference, demo, run, torchvision
    test_error: float | None  # fraction, where measured
    path: str
    label: str

    def to_dict(self) -> dict:
        return asdict(self)


def available_models(store=None) -> list[ModelEntry]:
    """Every model that can be loaded here, most accurate first within each source: the shipped references, the
    demos, finished runs of `store` with a checkpoint, then torchvision's ImageNet weights in the torch cache."""
    entries = [ModelEntry(f"reference:{ref.model}", ref.model, "reference", ref.test_error, str(ref.path),
                          f"{ref.label} (CIFAR-10, {ref.iterations:,} it.)") for ref in references()[0]]
    for name in DEMO_NAMES:
        try:
            metadata = read_metadata(demo_path(name))
        except CheckpointError:  # a damaged demo is reported where it is opened, not listed here
            continue
        entries.append(ModelEntry(f"demo:{name}", metadata["spec"]["name"], "demo", metadata.get("test_error"),
                                  str(demo_path(name)), f"{name} demo (CIFAR-10, 4 epochs)"))
    if store is not None:
        summaries = {summary["id"]: summary for summary in store.summaries()}
        for run in store.runs():
            latest = store.latest_checkpoint(run.id)
            if run.status == Status.FINISHED and latest:
                entries.append(ModelEntry(f"run:{run.id}", run.model, "run", summaries[run.id]["test_error"],
                                          str(latest[1]), f"run {run.id}: {run.name}"))
    for name in IMAGENET_NAMES:
        path = imagenet_weights_path(name)
        if path.is_file():
            top1 = imagenet_weights(name).meta["_metrics"]["ImageNet-1K"]["acc@1"]  # torchvision's own measurement
            entries.append(ModelEntry(f"imagenet:{name}", name, "torchvision", round(1 - top1 / 100, 5), str(path),
                                      f"{name} (torchvision IMAGENET1K_V1, ImageNet top-1)"))
    order = {source: index for index, source in enumerate(("reference", "demo", "run", "torchvision"))}
    return sorted(entries, key=lambda entry: (order[entry.source], entry.test_error is None, entry.test_error or 0))


def reference_run_id(model: str) -> int:
    """The fixed id of a reference's run in every store: -1 for the first of REFERENCE_NAMES, -2 for the next…"""
    return -1 - REFERENCE_NAMES.index(model)


def add_references_to(store) -> list[str]:
    """Record every readable reference in `store` as a read-only finished run (once; `Store.add_reference`), so
    the Runs page lists and overlays them like any run; one line per reference that could not be added."""
    found, problems = references()
    present = {run.reference for run in store.runs(references=True)}
    for ref in found:
        if ref.model in present:
            continue
        try:
            history = ref.history()
        except ReferenceError as error:
            problems.append(str(error))
            continue
        rows = history.astype(object).where(history.notna(), None).to_dict("records")  # NaN -> NULL
        store.add_reference(reference_run_id(ref.model), ref.model, name=f"{ref.label}, {REFERENCE_DATA}",
                            spec=ref.metadata["spec"], recipe=ref.recipe, data="cifar10-jpeg",
                            precision=ref.metadata["run"].get("precision", "fp32"), metrics=rows,
                            trained_at=time.time(), wall_s=float(history["elapsed_s"].max()))
    return problems

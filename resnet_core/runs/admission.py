"""Admission to the job queue: what a run would train with, whether this machine can train it, and queuing it.

    run_ids = submit_all(["plain20", "resnet20"], "synthetic", iterations=200)        # a library caller: no limits
    run_ids = submit_all(["plain20", "resnet20"], "cifar10", owner=person, limits=Limits.workshop())  # the app

A run submitted here is the same thing whoever submits it: a row of the store that a launcher executes
(`runs.dispatch`), recording metrics and checkpoints through the store. A shared server's limits (a person's runs,
the waiting bound, the cap, runs too long or deep for a CPU) apply only when the caller passes them, as the app does
with `Limits.workshop()`: a library caller or the CLI owns its machine. No UI code here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..nets.specs import NetSpec, get_spec
from ..training import memory
from ..training.data import SOURCE_HELP, list_split
from ..training.device import pick_precision
from ..training.recipe import Recipe, training_recipe
from .settings import max_concurrent_runs, max_waiting_runs, runs_per_user
from .store import Store

# Train sizes of the built-in sources; synthetic matches load_data's default synthetic_sizes.
SOURCE_SIZES = {"cifar10": (10, 50_000), "cifar100": (100, 50_000), "synthetic": (10, 2048)}
SOURCE_TEST_SIZES = {"cifar10": 10_000, "cifar100": 10_000, "synthetic": 512}
# A CPU trains ResNet-20 at ~400-700 img/s (docs/BENCHMARKS.md): 10 CIFAR-10 epochs take ~15 min, ResNet-110's
# ~1.5 h. The limit counts images, so a small dataset (synthetic: 2,048) may run more epochs of it.
CPU_MAX_EPOCHS = 10
CPU_MAX_IMAGES = CPU_MAX_EPOCHS * SOURCE_SIZES["cifar10"][1]
CIFAR_SIDE = 32  # pixels: the images CPU_MAX_IMAGES counts
CPU_MAX_DEPTH = 110


@dataclass(frozen=True)
class Limits:
    """What a shared server allows: `per_owner` runs queued or running per person, `max_waiting` runs waiting for one
    of the `cap` slots, and (`cpu_server`) no run too long or too deep for a CPU shared by a room."""

    per_owner: int | None = None
    max_waiting: int | None = None
    cap: int = 1
    cpu_server: bool = False

    @classmethod
    def workshop(cls, cap: int | None = None) -> "Limits":
        """The server's limits from its settings (runs.settings), as the app applies them to everyone."""
        return cls(per_owner=runs_per_user(), max_waiting=max_waiting_runs(), cap=max_concurrent_runs(cap),
                   cpu_server=True)

    def room(self) -> dict[str, int | None]:
        """The store's arguments for these limits (`Store.create_runs`, `Store.requeue_for_resume`)."""
        return dict(per_owner=self.per_owner, max_waiting=self.max_waiting, cap=self.cap)


def recorded_source(source: str) -> str:
    """The data as a run records it: a built-in source by its name, a folder by its absolute path (as load_data names
    it), so the run's worker (started in another folder) and every later command find it from wherever they run."""
    return source if source in SOURCE_SIZES else str(Path(source).expanduser().resolve())


def dataset_shape(source: str) -> tuple[int, int]:
    """(classes, training images) of a source, without decoding it."""
    if source in SOURCE_SIZES:
        return SOURCE_SIZES[source]
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise UserError(f"Unknown dataset {source!r}; allowed: {SOURCE_HELP}.")
    listing = list_split(folder, "train")
    return len(listing), sum(len(files) for files in listing.values())


def test_images_of(source: str) -> int:
    """Test images of a source (after `dataset_shape` has accepted it), without decoding it."""
    if source in SOURCE_TEST_SIZES:
        return SOURCE_TEST_SIZES[source]
    return sum(len(files) for files in list_split(Path(source).expanduser(), "test").values())


def submit(model: str, data: str, **settings) -> int:
    """Queue one run; `submit_all`'s arguments. Returns its id."""
    return submit_all([model], data, **settings)[0]


def planned_runs(models: list[str], data: str, *, iterations: int | None = None, epochs: int | None = None,
                 batch_size: int | None = None, lr: float | None = None, eval_every: int | None = None,
                 recipe: str | None = None, validation_images: int | None = None,
                 normalization: str | None = None) -> list[tuple[NetSpec, Recipe]]:
    """The net and the recipe each model would train with (`recipe.training_recipe`; `recipe`: its kind), checked
    as far as it can be without the data: what `submit_all` queues and the Train page describes before Start."""
    classes, train_images = dataset_shape(data)
    planned = []
    for model in models:
        try:
            spec = get_spec(model, num_classes=classes)
        except ValueError as error:
            raise UserError(str(error)) from None
        planned.append((spec, training_recipe(spec, iterations=iterations, epochs=epochs, train_images=train_images,
                                              kind=recipe, batch_size=batch_size, lr=lr, eval_interval=eval_every,
                                              validation_images=validation_images, normalization=normalization)))
    return planned


def submit_all(models: list[str], data: str, *, seed: int = 0, device: str = "cpu", precision: str | None = None,
               name: str | None = None, owner: str | None = None, store: Store | None = None,
               limits: Limits | None = None, taken_by: int | None = None, **settings) -> list[int]:
    """Queue one run per model with the recipe `planned_runs` gives it for `settings` (iterations or epochs,
    batch_size, lr, eval_every, recipe, validation_images, normalization), all or none; returns their ids.

    Checks what can be checked without the data (names, sizes, the memory a run needs) and, with `limits` (a shared
    server's), the CPU limits and, for an `owner` (a person using the app), the per-person limit and the queue's
    bound; a dataset that cannot be loaded makes the run fail with its reason when it starts. The CLI's `train`
    submits here without limits (the machine is its user's) and trains the run itself: `taken_by` its pid records
    the run running for it at once, so no dispatcher starts it too.
    """
    store = store or Store()
    check_device(device)
    data = recorded_source(data)
    train_images = dataset_shape(data)[1]
    runs = []
    for spec, recipe in planned_runs(models, data, **settings):
        check_fits(spec, recipe, device, train_images, cpu_server=limits is not None and limits.cpu_server)
        runs.append(dict(name=name or f"{spec.name} on {data}", spec=spec.to_dict(), recipe=recipe.to_dict(),
                         data=data, device=device, precision=pick_precision(torch.device(device), precision),
                         seed=seed))
    return store.create_runs(runs, owner=owner, taken_by=taken_by, **(limits.room() if limits else {}))


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("This server has no usable CUDA GPU; train on the cpu.")


def check_fits(spec: NetSpec, recipe: Recipe, device: str, train_images: int, *, cpu_server: bool) -> None:
    """Refuse a run this machine cannot train: more memory than it has, or (`cpu_server`) too long or too deep for a
    shared CPU server. A CIFAR net's images are `spec.input_size` pixels square: a segmentation run passes its
    backbone at its scenes' size, and a 64-pixel scene counts as four CIFAR images, in time as in memory."""
    if device == "cpu" and cpu_server:
        if spec.depth > CPU_MAX_DEPTH:
            raise UserError(f"{spec.name} is too deep to train on this CPU-only server; pick a depth up to "
                            f"{CPU_MAX_DEPTH}.")
        side = spec.input_size
        larger = spec.family == "cifar" and side != CIFAR_SIDE
        most = round(CPU_MAX_IMAGES * (CIFAR_SIDE / side) ** 2) if larger else CPU_MAX_IMAGES
        if recipe.iterations * recipe.batch_size > most:
            raise UserError(f"{recipe.iterations:,} iterations of {recipe.batch_size} are too long for this CPU-only "
                            f"server; train on at most {most:,} images{f' of {side} x {side} pixels' if larger else ''}"
                            f" ({'as long as ' if larger else ''}{CPU_MAX_EPOCHS} CIFAR-10 epochs, "
                            f"{most // recipe.batch_size:,} iterations of {recipe.batch_size}).")
    needed = memory.training_bytes(spec, recipe.batch_size, train_images, device)
    available = memory.available_bytes(device)
    if needed > available:
        raise UserError(f"{spec.name} with batches of {recipe.batch_size:,} needs about {memory.gigabytes(needed)} of "
                        f"memory to train, but this server has {memory.gigabytes(available)} free; use a smaller "
                        "batch or a shallower net.")

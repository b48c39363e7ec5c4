"""Checkpoints: safetensors (no pickle, safe to share) with the run's state as JSON metadata.

Tensors: `model.<name>` (parameters and BN buffers), `optimizer.<index>.momentum_buffer`, `rng.torch`, and
`normalization.mean`, `normalization.std`: the input normalisation the net was trained with (augment.Normalization).
Metadata key `resnet_explorer`: format, spec, recipe, iteration, the optimizer's hyper-parameters,
the trainer's own state (warm-up, smoothed values, elapsed time, plateau scheduler), `normalization` (its kind) and
`classes` (the dataset's class names, so the file classifies away from its data).
Checkpoints written before normalisation was recorded have none: their nets were normalised per channel with the
statistics of their dataset, which every reader then computes again (see `Checkpoint.normalization`).
Written to a temporary file in the same folder and renamed, so a crash leaves the old file or the new one.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from .augment import Normalization

METADATA_KEY = "resnet_explorer"
FORMAT = 1


@dataclass
class Checkpoint:
    spec: dict
    recipe: dict
    iteration: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict  # torch.optim state_dict
    rng_state: torch.Tensor
    trainer_state: dict  # JSON-able
    normalization: Normalization | None = None  # None: an old checkpoint, per channel with its dataset's statistics
    classes: tuple[str, ...] | None = None  # the dataset's class names, in label order; None: an old checkpoint


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    tensors = {f"model.{key}": value.detach().cpu().contiguous() for key, value in checkpoint.model_state.items()}
    tensors.update(optimizer_tensors(checkpoint.optimizer_state))
    tensors["rng.torch"] = checkpoint.rng_state
    metadata = {"format": FORMAT, "spec": checkpoint.spec, "recipe": checkpoint.recipe,
                "iteration": checkpoint.iteration, "param_groups": checkpoint.optimizer_state["param_groups"],
                "trainer": checkpoint.trainer_state}
    add_normalization(tensors, metadata, checkpoint.normalization)
    if checkpoint.classes is not None:  # so the file classifies on its own, away from its dataset (an upload)
        metadata["classes"] = list(checkpoint.classes)
    write_file(path, tensors, metadata)


def write_file(path: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """`tensors` in a safetensors file with `metadata` as its JSON under METADATA_KEY, written to a temporary file in
    the same folder, synced and renamed: a process killed meanwhile leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(metadata)})
        with open(tmp, "rb") as handle:  # on disk before the rename makes it the checkpoint
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:  # e.g. a full disk: no half-written file is left to fill it further
        tmp.unlink(missing_ok=True)
        raise


def optimizer_tensors(optimizer_state: dict) -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state (SGD's momentum buffers) as `optimizer.<index>.<name>` tensors; its
    param_groups, plain numbers, go in the metadata."""
    return {f"optimizer.{index}.{name}": value.detach().cpu().contiguous()
            for index, state in optimizer_state["state"].items() for name, value in state.items()}


def optimizer_state(tensors: dict[str, torch.Tensor], param_groups: list) -> dict:
    """The torch.optim state_dict that `optimizer_tensors` and `param_groups` were written from."""
    state: dict = {"state": {}, "param_groups": param_groups}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value
    return state


def read_metadata(path: Path) -> dict:
    """The checkpoint's JSON metadata, without loading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except FileNotFoundError:
        raise CheckpointError(f"Checkpoint {path} is missing; the run can only start again from scratch.") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"Checkpoint {path} is truncated or not a safetensors file ({error}).") from None
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a ResNet Explorer checkpoint (no "
                              f"{METADATA_KEY!r} metadata).")
    metadata = json.loads(raw)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"Checkpoint {path} has format {metadata.get('format')!r}; this version reads "
                              f"format {FORMAT}.")
    return metadata


def load_training_checkpoint(path: Path) -> Checkpoint:
    """Everything a run needs to continue (model, optimizer, RNG, trainer state); the public
    `resnet_core.load_checkpoint` (`load_model` below) returns only a ready model."""
    metadata = read_metadata(path)
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"Checkpoint {path} is truncated or damaged ({error}).") from None
    model_state = {key[len("model."):]: value for key, value in tensors.items() if key.startswith("model.")}
    return Checkpoint(spec=metadata["spec"], recipe=metadata["recipe"], iteration=metadata["iteration"],
                      model_state=model_state, optimizer_state=optimizer_state(tensors, metadata["param_groups"]),
                      rng_state=tensors["rng.torch"],
                      trainer_state=metadata["trainer"], normalization=read_normalization(path, metadata, tensors),
                      classes=_read_classes(path, metadata))


def _read_classes(path: Path, metadata: dict) -> tuple[str, ...] | None:
    """The class names a checkpoint records; None for one written before they were recorded. Anything else than a
    list of names (a foreign or hand-edited file) is refused in one line."""
    if "classes" not in metadata:
        return None
    classes = metadata["classes"]
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise InvalidCheckpointError(f"{path.name} records class names that are not a list of names.")
    return tuple(classes)


def add_normalization(tensors: dict, metadata: dict, normalization: Normalization | None) -> None:
    if normalization is not None:
        tensors["normalization.mean"] = normalization.mean.detach().cpu().contiguous()
        tensors["normalization.std"] = normalization.std.detach().cpu().contiguous()
        metadata["normalization"] = normalization.kind


def read_normalization(path: Path, metadata: dict, tensors: dict) -> Normalization | None:
    """The normalisation a checkpoint records; for a model-only file from before it was recorded, its `mean` and `std`
    metadata (per channel); None for an old training checkpoint (per channel with its dataset's statistics)."""
    kind = metadata.get("normalization")
    if kind is None:
        if "mean" in metadata and "std" in metadata:
            return Normalization("per-channel", *(torch.tensor(metadata[key], dtype=torch.float32)
                                                  for key in ("mean", "std")))
        return None
    try:
        normalization = Normalization(kind, tensors["normalization.mean"].float(), tensors["normalization.std"].float())
    except KeyError:
        raise InvalidCheckpointError(f"{path.name} names a {kind} normalisation but lacks its tensors.") from None
    expected = {"per-pixel": 3, "per-channel": 1}.get(kind)
    if expected is None or normalization.mean.dim() != expected or normalization.mean.shape[0] != 3 \
            or normalization.std.shape != (3,):
        raise InvalidCheckpointError(f"{path.name} records a normalisation that is not per-pixel or per-channel over "
                                     "3 channels.")
    return normalization


# ------------------------------------------------------------------ a network to use, from any file a user gives
# Reading is pickle-free for safetensors and `torch.load(weights_only=True)` for .pt/.pth, so no file can run code.
PICKLE_SUFFIXES = (".pt", ".pth")


class InvalidCheckpointError(CheckpointError):
    """A file that is not the checkpoint of a network it claims to be; the message is one sentence."""


def load_model(path: str | os.PathLike) -> tuple["ResNet", dict]:
    """The network a checkpoint holds, in eval mode, and the checkpoint's metadata (`spec`, `recipe`, …).

    The net's `normalization` is the input normalisation the checkpoint records (None for an old training
    checkpoint, normalised per channel with its dataset's statistics).

    Reads this project's safetensors checkpoints (training's or exported ones) and `.pt`/`.pth` files holding
    a dict `{"spec": NetSpec.to_dict(), "model_state": state_dict, …}`. Raises `InvalidCheckpointError` for
    anything else: pickles of other objects, random or truncated bytes, foreign safetensors, and weights of
    another net than the metadata's spec (compared on the meta device, so a lying spec allocates nothing).
    Exported from the package as `resnet_core.load_checkpoint`.
    """
    from ..nets.model import ResNet
    from ..nets.specs import NetSpec

    path = Path(path)
    if not path.is_file():
        raise InvalidCheckpointError(f"There is no checkpoint file at {str(path)!r}.")
    metadata, model_state, tensors = (_read_pickle_checkpoint if path.suffix in PICKLE_SUFFIXES
                                      else _read_safetensors)(path)
    try:
        spec = NetSpec.from_dict(metadata["spec"])
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidCheckpointError(f"{path.name} names no valid network in its metadata ({one_line(error)}).") \
            from None
    with torch.device("meta"):
        expected = {key: value.shape for key, value in ResNet(spec).state_dict().items()}
    found = {key: value.shape for key, value in model_state.items()}
    if found != expected:
        shared = expected.keys() & found.keys()
        wrong = len(expected.keys() ^ found.keys()) + sum(found[key] != expected[key] for key in shared)
        raise InvalidCheckpointError(f"{path.name} does not hold the {spec.name} its metadata names ({wrong} tensors "
                                     "missing, extra or of another shape).")
    model = ResNet(spec)
    model.load_state_dict(model_state)
    model.normalization = read_normalization(path, metadata, tensors)
    model.classes = _read_classes(path, metadata)
    return model.eval(), metadata


def save_model(path: str | os.PathLike, model: "ResNet", normalization: Normalization | None = None,
               **metadata) -> None:
    """Write only the network (no optimizer or trainer state) as a checkpoint `load_model` reads, with its input
    `normalization` and JSON-able `metadata` (class names, test error, …) beside its spec."""
    tensors = {f"model.{key}": value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    header = {"format": FORMAT, "spec": model.spec.to_dict(), **metadata}
    add_normalization(tensors, header, normalization)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(header)})


def _read_safetensors(path: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
            if raw is None:
                raise InvalidCheckpointError(f"{path.name} is not a ResNet Explorer checkpoint (a safetensors file "
                                             f"without {METADATA_KEY!r} metadata).")
            metadata = json.loads(raw)
            model_state = {key[len("model."):]: handle.get_tensor(key) for key in handle.keys()
                           if key.startswith("model.")}
            normalization = {key: handle.get_tensor(key) for key in handle.keys() if key.startswith("normalization.")}
    except InvalidCheckpointError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise InvalidCheckpointError(f"{path.name} is truncated or not a safetensors checkpoint "
                                     f"({one_line(error)}).") from None
    if not isinstance(metadata, dict):
        raise InvalidCheckpointError(f"{path.name} has metadata that is not a JSON object.")
    return metadata, model_state, normalization


def _read_pickle_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    # weights_only unpickles tensors and plain containers only and runs no code; whatever it cannot parse
    # (foreign objects, random bytes, a cut-off zip) means the file is not a checkpoint.
    except Exception as error:  # noqa: BLE001
        raise InvalidCheckpointError(f"{path.name} is not a readable weights-only PyTorch checkpoint "
                                     f"({one_line(error)}).") from None
    model_state = content.get("model_state") if isinstance(content, dict) else None
    if not (isinstance(model_state, dict)
            and all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in model_state.items())):
        raise InvalidCheckpointError(f"{path.name} must hold a dict with 'spec' and 'model_state' (a state dict of "
                                     "tensors).")
    # Its normalisation, if any, rides as `mean`/`std` lists beside the spec (per channel).
    return {key: value for key, value in content.items() if key != "model_state"}, model_state, {}


def one_line(error: Exception) -> str:
    """The first line of an error's message (at most 200 characters), for one-sentence user errors."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:200]

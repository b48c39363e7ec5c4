"""Checkpoints: safetensors (no pickle, safe to share) with the run's state as JSON metadata.

Tensors: `model.<name>` (parameters and BN buffers), `optimizer.<index>.momentum_buffer`, `rng.torch`.
Metadata key `resnet_explorer`: format, spec, recipe, iteration, the optimizer's hyper-parameters and
the trainer's own state (warm-up, smoothed values, elapsed time, plateau scheduler).
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

from .errors import CheckpointError

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


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    tensors = {f"model.{key}": value.detach().cpu().contiguous() for key, value in checkpoint.model_state.items()}
    for index, state in checkpoint.optimizer_state["state"].items():
        for name, value in state.items():
            tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
    tensors["rng.torch"] = checkpoint.rng_state
    metadata = {"format": FORMAT, "spec": checkpoint.spec, "recipe": checkpoint.recipe,
                "iteration": checkpoint.iteration, "param_groups": checkpoint.optimizer_state["param_groups"],
                "trainer": checkpoint.trainer_state}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(metadata)})
    with open(tmp, "rb") as handle:  # on disk before the rename makes it the checkpoint
        os.fsync(handle.fileno())
    os.replace(tmp, path)


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


def load_checkpoint(path: Path) -> Checkpoint:
    metadata = read_metadata(path)
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"Checkpoint {path} is truncated or damaged ({error}).") from None
    model_state = {key[len("model."):]: value for key, value in tensors.items() if key.startswith("model.")}
    optimizer_state: dict = {"state": {}, "param_groups": metadata["param_groups"]}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[name] = value
    return Checkpoint(spec=metadata["spec"], recipe=metadata["recipe"], iteration=metadata["iteration"],
                      model_state=model_state, optimizer_state=optimizer_state, rng_state=tensors["rng.torch"],
                      trainer_state=metadata["trainer"])

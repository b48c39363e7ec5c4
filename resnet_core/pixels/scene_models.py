"""A segmentation run of the store as a model to ask: its saved segmenter, its scenes' classes, the test scenes it
was scored on, and every pixel's class for one scene or photo.

    model = load_scene_model(store, run_id)
    scenes = test_scenes(store, model.run)           # composed again, as evaluate_segmentation_run composes them
    model.label(scenes.test_images[3])               # torchvision_models.Segmentation: class and confidence per pixel
    model.label(photo_scene(photo, model.canvas, model.stride))

The segmenter is in eval mode and only ever runs forward passes here, so one loaded model may serve many readers
(the app caches it); `attribution.pixel_attribution` works on a private copy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from ..runs.schema import Run
from ..runs.store import Store
from .jobs import KIND, SegmentationSettings, run_test_scenes
from .scenes import Scenes
from .segmenter import Segmenter, load_segmenter
from .torchvision_models import Segmentation

# A photo is resized to the scenes' canvas on its shorter side (the size of the objects the net learned, 16-40 px),
# and its longer side to at most this many canvases: a panorama keeps its shape without growing without bound.
MAX_PHOTO_ASPECT = 4


@dataclass(frozen=True)
class SceneModel:
    """A finished segmentation run's segmenter (eval mode, shared read-only) and what it labels pixels with."""

    run: Run
    segmenter: Segmenter
    classes: tuple[str, ...]  # by label: ("background", the scenes' source classes…)
    settings: SegmentationSettings
    checkpoint_iteration: int

    @property
    def canvas(self) -> int:
        """Pixels: the side of the scenes it trained on."""
        return self.settings.layout.canvas

    @property
    def stride(self) -> int:
        """The sides of an image it segments must be multiples of this (its output stride)."""
        return self.segmenter.spec.output_stride

    def model_input(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H, W) -> the normalised (1, 3, H, W) input the segmenter trained on."""
        _check_image(image, self.stride)
        return self.segmenter.normalization(image.cpu()[None])

    @torch.inference_mode()
    def label(self, image: torch.Tensor) -> Segmentation:
        """Every pixel's likeliest class and its softmax probability for a uint8 (3, H, W) scene or photo."""
        logits = self.segmenter(self.model_input(image))[0]  # (classes, H, W)
        confidence, classes = logits.softmax(0).max(0)
        return Segmentation(classes.to(torch.uint8).numpy(), confidence.float().numpy(), self.classes)


def load_scene_model(store: Store, run_id: int) -> SceneModel:
    """The segmenter run `run_id` saved; a one-line UserError for a run of another kind or one with no segmenter
    yet (a segmentation run saves it when it ends)."""
    run = store.run(run_id)
    if run.kind != KIND:
        raise UserError(f"Run {run_id} is a {run.kind} run, not a segmentation run.")
    latest = store.latest_checkpoint(run_id)
    if latest is None or not latest[1].is_file():
        raise UserError(f"Run {run_id} ({run.status}) has no segmenter yet; a segmentation run saves it when it "
                        "ends.")
    segmenter, metadata = load_segmenter(latest[1])
    if segmenter.normalization is None:  # every run records the one it trained with; a hand-made file may not
        raise UserError(f"Run {run_id}'s segmenter records no input normalisation, so its input is unknown.")
    classes = tuple(metadata.get("classes") or (f"class {k}" for k in range(segmenter.spec.classes)))
    return SceneModel(run, segmenter, classes, SegmentationSettings.from_dict(run.settings), latest[0])


def test_scenes(store: Store, run: Run) -> Scenes:
    """The test scenes segmentation run `run` was scored on (jobs.run_test_scenes), from `store`'s data folder."""
    return run_test_scenes(run, store.home)


def photo_scene(photo: Image.Image, canvas: int, stride: int = 1) -> torch.Tensor:
    """uint8 (3, H, W): an RGB photo resized so its shorter side is `canvas` pixels and its longer side at most
    MAX_PHOTO_ASPECT canvases, both rounded to multiples of `stride`."""
    width, height = photo.size
    scale = min(canvas / min(width, height), MAX_PHOTO_ASPECT * canvas / max(width, height))
    size = tuple(max(stride, round(side * scale / stride) * stride) for side in (width, height))
    resized = photo.convert("RGB").resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1)


def picture(image: torch.Tensor) -> np.ndarray:
    """(H, W, 3) uint8 for display, from a uint8 (3, H, W) scene."""
    return image.cpu().permute(1, 2, 0).numpy()


def _check_image(image: torch.Tensor, stride: int) -> None:
    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"Expected one uint8 RGB image as a (3, H, W) tensor; got {image.dtype} "
                         f"{tuple(image.shape)}.")
    if image.shape[1] % stride or image.shape[2] % stride:
        raise UserError(f"This segmenter labels images whose sides are multiples of {stride} pixels; got "
                        f"{image.shape[2]} x {image.shape[1]}.")

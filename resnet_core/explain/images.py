"""Images and network input: an RGB image resized, cropped and normalised as a net was tested, and back.

Decoding a user's file is `training.image_files.load_image`'s job (uploads and image folders alike).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..training.augment import Normalization

# ImageNet evaluation (§3.4, [21]; torchvision's too): resize the shorter side to 256, centre-crop 224.
IMAGENET_CROP_FRACTION = 224 / 256


def to_model_input(image: Image.Image, input_size: int, normalization: Normalization, *,
                   crop_fraction: float = 1.0) -> torch.Tensor:
    """The normalised (1, 3, input_size, input_size) tensor a network of that input size sees.

    The shorter side is resized to `input_size / crop_fraction` and the centre square cropped:
    the aspect ratio is kept (a squashed photo is not what any net was trained on). CIFAR images
    are full-frame objects, so CIFAR nets use `crop_fraction=1.0` (the whole shorter side);
    ImageNet nets are tested on the centre 224 of images resized to 256 (`IMAGENET_CROP_FRACTION`, §3.4).
    `normalization` is the network's own (a larger mean image is cropped at its centre, as in testing).
    """
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1]; got {crop_fraction!r}.")
    width, height = image.size
    scale = input_size / crop_fraction / min(width, height)
    resized_size = (max(input_size, round(width * scale)), max(input_size, round(height * scale)))
    if image.mode != "RGB":  # converting first: Pillow resizes palette images by nearest neighbour only
        image = image.convert("RGB")
    # reducing_gap lets Pillow shrink a 24 MP photo by whole factors first: fast, still antialiased.
    resized = image.resize(resized_size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (resized_size[0] - input_size) // 2, (resized_size[1] - input_size) // 2
    square = resized.crop((left, top, left + input_size, top + input_size))
    pixels = torch.from_numpy(np.array(square)).permute(2, 0, 1)  # uint8 (3, H, W)
    return normalization.to("cpu")(pixels).unsqueeze(0)  # (1, 3, H, W)


def model_input_to_image(x: torch.Tensor, normalization: Normalization) -> Image.Image:
    """The image "as the network sees it": undo `to_model_input`'s normalisation of a (1, 3, H, W) or (3, H, W)
    tensor."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"Expected one image, got a batch of {x.shape[0]}.")
        x = x[0]
    pixels = normalization.to("cpu").invert(x.detach().cpu().float()).round().clamp(0, 255)  # (3, H, W)
    return Image.fromarray(pixels.byte().permute(1, 2, 0).numpy())
